"""SIP (RFC 3261) over UDP or TCP on any port; SDP bodies announce the media flows.

A SIP message starts with a request line ``METHOD SP Request-URI SP SIP/2.0`` or a status line
``SIP/2.0 SP 3DIGIT``.  An INVITE to the phone network (a ``tel:`` URI, ``user=phone``, or an
E.164-like number as the user part of the Request-URI or To) makes the call ``pstn``; other
INVITEs are ``app``.  Every SDP ``c=``/``m=`` pair becomes an Expectation for the media (RTP
on the port, RTCP on port+1) carrying the call kind.
"""

from __future__ import annotations

import re

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label


METHODS = frozenset({b"INVITE", b"ACK", b"BYE", b"CANCEL", b"REGISTER", b"OPTIONS", b"PRACK",
                     b"SUBSCRIBE", b"NOTIFY", b"PUBLISH", b"INFO", b"REFER", b"MESSAGE",
                     b"UPDATE"})
URI_SCHEMES = (b"sip:", b"sips:", b"tel:", b"urn:")
KEEPALIVES = (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00")
# user part of a phone number: optional +, digits and visual separators (RFC 3966)
PHONE_USER = re.compile(rb"^\+?[0-9\-.()]+$")
MIN_PHONE_DIGITS = 7  # national significant numbers are at least this long
MAX_PHONE_DIGITS = 15  # E.164
MEDIA_TTL = 120.0
_STATUS = re.compile(rb"^SIP/2\.0 [1-6][0-9][0-9]")
# a request line starts with a method, a status line with SIP/2.0; keep-alives wait
_FIRST = first_bytes(*METHODS, b"SIP/2.0", *KEEPALIVES)
SPEC = Spec("sip", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=4, priority=12,
            prefilter=dict.fromkeys(("udp", "tcp"), Prefilter(_FIRST, patience=2)))


def first_line(msg: bytes) -> tuple[str, bytes] | None:
    """("request", method) or ("status", code) if ``msg`` starts a SIP message."""
    line = msg.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    if _STATUS.match(line):
        return "status", line[8:11]
    parts = line.split(b" ")
    if len(parts) == 3 and parts[0] in METHODS and parts[2] == b"SIP/2.0" and \
            parts[1].lower().startswith(URI_SCHEMES):
        return "request", parts[0]
    return None


_COMPACT = {b"t": b"to", b"f": b"from", b"i": b"call-id", b"c": b"content-type",
            b"l": b"content-length", b"m": b"contact", b"v": b"via"}

# One-entry memos keyed by the message object itself: the engine hands the same payload bytes
# to match() and learn(), which both need the headers and the call kind.  The memo holds a
# reference to the key, so an identity hit is always the same message.
_memo_headers: list = [None, None]
_memo_kind: list = [None, None]


def headers(msg: bytes) -> dict[bytes, bytes]:
    """First value of each header, names lower-cased (compact forms expanded).

    The returned dict is shared with later callers for the same message: do not modify it.
    """
    if _memo_headers[0] is msg:
        return _memo_headers[1]
    out = _headers(msg)
    _memo_headers[0], _memo_headers[1] = msg, out
    return out


def _headers(msg: bytes) -> dict[bytes, bytes]:
    compact = _COMPACT
    out: dict[bytes, bytes] = {}
    head = msg.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, sep, val = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        name = compact.get(name, name)
        out.setdefault(name, val.strip())
    return out


def _uri_of(value: bytes) -> bytes:
    """The URI inside a name-addr (``"Bob" <sip:bob@x>;tag=1``) or an addr-spec."""
    lt = value.find(b"<")
    if lt >= 0:
        gt = value.find(b">", lt)
        return value[lt + 1 : gt if gt > 0 else None]
    return value.split(b";tag=")[0].strip()


def is_phone_uri(uri: bytes) -> bool:
    """A tel: URI, a SIP URI with user=phone, or one whose user part is a phone number."""
    low = uri.strip().lower()
    if low.startswith(b"tel:"):
        return True
    if b"user=phone" in low:
        return True
    if not low.startswith((b"sip:", b"sips:")):
        return False
    rest = low.split(b":", 1)[1]
    if b"@" not in rest:
        return False
    user = rest.split(b"@", 1)[0].split(b";", 1)[0]
    if not PHONE_USER.match(user):
        return False
    digits = sum(1 for c in user if 48 <= c <= 57)
    if user.startswith(b"+"):
        return MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS
    return MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS


def call_kind(msg: bytes) -> str:
    """"pstn" or "app" for an INVITE, from its Request-URI and To header."""
    if _memo_kind[0] is msg:
        return _memo_kind[1]
    kind = _call_kind(msg)
    _memo_kind[0], _memo_kind[1] = msg, kind
    return kind


def _call_kind(msg: bytes) -> str:
    line = msg.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    ruri = parts[1] if len(parts) == 3 else b""
    to = _uri_of(headers(msg).get(b"to", b""))
    return "pstn" if is_phone_uri(ruri) or is_phone_uri(to) else "app"


def sdp_media(body: bytes) -> list[tuple[str, int, str]]:
    """(address, port, media) for each m= line of an SDP body, with its effective c= address."""
    session_addr = None
    out = []
    cur = None
    for raw in body.split(b"\n"):
        line = raw.strip()
        if line.startswith(b"c="):
            f = line[2:].split()
            if len(f) >= 3 and f[0] == b"IN":
                addr = f[2].split(b"/")[0].decode("ascii", "replace")
                if cur is None:
                    session_addr = addr
                else:
                    cur[0] = addr
        elif line.startswith(b"m="):
            if cur is not None:
                out.append(tuple(cur))
            f = line[2:].split()
            if len(f) >= 3 and f[1].split(b"/")[0].isdigit():
                cur = [session_addr, int(f[1].split(b"/")[0]), f[0].decode("ascii", "replace")]
            else:
                cur = None
    if cur is not None:
        out.append(tuple(cur))
    return [(a, p, m) for a, p, m in out if a and a not in ("0.0.0.0", "::") and 0 < p < 65536]


def _messages(flow: Flow, pl: bytes) -> list[bytes]:
    """SIP messages in one payload (TCP may carry several back to back)."""
    if flow.l4 == "udp":
        return [pl]
    out = []
    rest = pl
    for _ in range(8):
        if not rest or first_line(rest) is None:
            break
        head, sep, tail = rest.partition(b"\r\n\r\n")
        clen = headers(head + b"\r\n\r\n").get(b"content-length", b"0")
        n = int(clen) if clen.isdigit() else 0
        out.append(head + sep + tail[:n])
        rest = tail[n:]
    return out or [pl]


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if pl in KEEPALIVES:
        return None
    fl = first_line(pl)
    if fl is None:
        return GIVE_UP if flow.npayload >= 2 else None
    kind, what = fl
    call = "none"
    callid = headers(pl).get(b"call-id")
    if kind == "request" and what == b"INVITE":
        call = call_kind(pl)
    elif callid is not None:
        call = ctx.sip_calls.get(callid, "none")
    reason = "sip-request-line" if kind == "request" else "sip-status-line"
    return voip_label("sip", reason, 0.95, call)


def learn(flow: Flow, sample, ctx) -> None:
    """Follow the dialogs of a SIP flow: call kinds by Call-ID, SDP media expectations."""
    from .engine import EXPECT_TTL, Expectation

    for msg in _messages(flow, sample.payload):
        fl = first_line(msg)
        if fl is None:
            continue
        h = headers(msg)
        callid = h.get(b"call-id", b"")
        if fl == ("request", b"INVITE"):
            ctx.sip_calls[callid] = call_kind(msg)
            if len(ctx.sip_calls) > 50_000:
                ctx.sip_calls.clear()
        call = ctx.sip_calls.get(callid, "none")
        body = msg.partition(b"\r\n\r\n")[2]
        if not body or b"m=" not in body:
            continue
        for addr, port, media in sdp_media(body):
            l4 = "udp"
            for p, app in ((port, "rtp"), (port + 1, "rtcp")):
                ctx.expect(Expectation(l4, addr, p, app, "voip", call, sample.ts + EXPECT_TTL))
