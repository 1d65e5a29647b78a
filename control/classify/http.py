"""HTTP/1.x requests and responses (Host names the app), and the text protocols that share its
syntax: RTSP, SSDP/HTTPU, BitTorrent local discovery and HTTP proxies."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, app_label, first_bytes


METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
           b"CONNECT ", b"TRACE ", b"PROPFIND ", b"PROPPATCH ", b"MKCOL ", b"COPY ", b"MOVE ",
           b"LOCK ", b"UNLOCK ", b"REPORT ", b"SEARCH ")
RTSP_METHODS = (b"DESCRIBE ", b"SETUP ", b"PLAY ", b"PAUSE ", b"TEARDOWN ", b"ANNOUNCE ",
                b"GET_PARAMETER ", b"SET_PARAMETER ", b"RECORD ", b"OPTIONS ")
UDP_STARTS = {b"M-SEARCH * HTTP/1.1": ("ssdp", "ssdp-msearch"),
              b"NOTIFY * HTTP/1.1": ("ssdp", "ssdp-notify"),
              b"BT-SEARCH * HTTP/1.1": ("bittorrent", "bt-lsd")}
SPEC = Spec("http", frozenset({"tcp", "udp"}), needs_payload=True, max_packets=4, priority=30,
            prefilter={"udp": Prefilter(first_bytes(*UDP_STARTS, b"HTTP/"))})
# request-target prefixes / header words that name an application over plain HTTP
URI_APPS: tuple[tuple[bytes, str], ...] = (
    (b"/announce?info_hash=", "bittorrent"), (b"/scrape?info_hash=", "bittorrent"),
    (b"/uri-res/n2r?", "gnutella"), (b"/get/", None),
)
HEADER_APPS: tuple[tuple[bytes, str], ...] = (
    (b"\r\nx-gnutella-", "gnutella"), (b"\r\nx-queue:", "gnutella"),
    (b"user-agent: bittorrent", "bittorrent"), (b"user-agent: utorrent", "bittorrent"),
    (b"user-agent: azureus", "bittorrent"), (b"content-type: application/ocsp-",
                                              "ocsp"),
    (b"content-type: application/dns-message", "doh-dot"),
    (b"user-agent: whatsapp", "whatsapp"), (b"user-agent: spotify", "spotify"),
    (b"\r\nserver: ntopng", "ntop"), (b"content-type: application/dash+xml", "mpegdash"),
)
# request-target suffixes (path before any query) of MPEG-DASH manifests and media segments
DASH_SUFFIXES = (b".mpd", b".m4s", b".m4v", b".m4a", b".mp4", b".cmfv", b".cmfa")
# a plain request that names no app waits this long (payload packets) for the response head,
# whose headers (Server, Content-Type) may name it
GENERIC_REQUEST_CONF = 0.45


def header(msg: bytes, name: bytes) -> bytes | None:
    """Value of the first header ``name`` (lower-case, with colon) in an HTTP head."""
    low = msg.lower()
    i = low.find(b"\r\n" + name)
    if i < 0:
        i = low.find(b"\n" + name)
        if i < 0:
            return None
        i += 1
    else:
        i += 2
    j = msg.find(b"\r\n", i)
    if j < 0:
        j = len(msg)
    return msg[i + len(name) : j].strip()


def match(flow: Flow, ctx) -> Label | None:
    s = flow.last
    pl = s.payload
    if flow.l4 == "udp":
        for start, (app, why) in UDP_STARTS.items():
            if pl.startswith(start):
                return app_label(app, why, 0.9, l4="udp")
        if pl.startswith(b"HTTP/1.1 200 OK") and flow.has_port(1900):
            return app_label("ssdp", "ssdp-response", 0.8, l4="udp")
        return GIVE_UP
    if pl.startswith(b"HTTP/1."):
        lab = _from_head(flow, ctx, pl, "http-response", 0.5)
        if lab.app == "http" and flow.tentative is not None and flow.tentative.app == "http":
            return app_label("http", flow.tentative.reason, 0.8)  # the request's verdict
        return lab
    if pl.startswith(b"RTSP/1.0"):
        return app_label("rtsp", "rtsp-response", 0.9)
    if any(pl.startswith(m) for m in RTSP_METHODS):
        line = pl.split(b"\r\n", 1)[0]
        if line.endswith(b"RTSP/1.0"):
            return app_label("rtsp", "rtsp-request", 0.9)
    if any(pl.startswith(m) for m in METHODS):
        line = pl.split(b"\r\n", 1)[0]
        if b" HTTP/1." not in line and b" HTTP/2" not in line:
            if len(line) < len(pl) or len(pl) > 2000:
                return GIVE_UP  # a full first line without the version: not HTTP
            return app_label("http", "http-method", 0.4)
        if b" SIP/2.0" in line:
            return GIVE_UP
        if pl.startswith(b"CONNECT "):
            return app_label("http-connect", "http-connect", 0.8)
        if line.split(b" ", 2)[1:2] and line.split(b" ", 2)[1].startswith(b"http://"):
            return _from_head(flow, ctx, pl, "http-proxy-request", 0.8, default="http-proxy")
        lab = _from_head(flow, ctx, pl, "http-request", 0.8)
        if lab.app == "http" and lab.reason == "http-request":
            return app_label("http", "http-request", GENERIC_REQUEST_CONF)
        return lab
    if flow.tentative is not None and flow.tentative.app == "http":
        return app_label("http", flow.tentative.reason, 0.8)  # body bytes: no head coming
    if flow.npayload >= 2:
        return GIVE_UP
    return None


def _from_head(flow: Flow, ctx, head: bytes, why: str, conf: float,
               default: str = "http") -> Label:
    low = head[:4096].lower()
    line = low.split(b"\r\n", 1)[0]
    for prefix, app in URI_APPS:
        if app and prefix in line:
            return app_label(app, f"http-uri:{app}", 0.9)
    target = line.split(b" ", 2)[1] if line.count(b" ") >= 2 else b""
    if target.split(b"?", 1)[0].endswith(DASH_SUFFIXES):
        return app_label("mpegdash", "http-uri:dash-segment", 0.85)
    for word, app in HEADER_APPS:
        if word in low:
            return app_label(app, f"http-header:{app}", 0.85)
    host = header(head, b"host:")
    if host:
        name = host.decode("ascii", "replace").split(":")[0].strip().lower()
        if flow.samples and flow.last.dir == 0:
            ctx.knowledge.learn_name(flow.key.dst, name)
        app = ctx.knowledge.app_for_name(name)
        if app:
            return app_label(app, f"http-host:{name}"[:60], conf, carrier=True)
    return app_label(default, why, conf)
