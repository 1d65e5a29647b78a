"""The carrier scenario, replayed on a lab: calls into the phone network are allowed only
through the licensed carrier's range; app-to-app calls pass.

Each call is a SIP INVITE from the client (with SDP announcing its media port), then RTP
from the far end to that port. Whether the RTP arrives is what the operator cares about.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from .lab import Lab, netns_socket

CARRIER_POLICY = """\
# Calls to the phone network (PC-to-phone) only through licensed carriers;
# app-to-app calls pass.
default: allow
sets:
  carriers: [203.0.113.0/24, 2001:db8:100::/48]
rules:
  - {name: pstn-via-carriers, match: {call: pstn, ip_set: carriers}, action: allow}
  - {name: no-pstn-elsewhere, match: {call: pstn}, action: drop}
"""


@dataclass
class CallResult:
    name: str
    uri: str
    peer: str
    transport: str
    media_sent: int
    media_delivered: int
    label: str


def invite(uri: str, to: str, caller: str, media_port: int, call_id: str, transport: str) -> bytes:
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {caller}\r\ns=-\r\nc=IN IP4 {caller}\r\nt=0 0\r\n"
           f"m=audio {media_port} RTP/AVP 0 8 101\r\n")
    return (f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/{transport.upper()} {caller}:5062\r\n"
            f"From: <sip:alice@example.org>;tag=9\r\nTo: <{to}>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:alice@{caller}:5062>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


def rtp_packet(seq: int, ssrc: int = 0x1234ABCD) -> bytes:
    return bytes([0x80, 0x00]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + \
        ssrc.to_bytes(4, "big") + b"\xd5" * 160


def place_call(lab: Lab, *, name: str, uri: str, to: str, peer: str, media_port: int,
               transport: str = "udp", packets: int = 20, settle: float = 0.5,
               label_of: Callable[[int], str] | None = None) -> CallResult:
    with netns_socket(lab.client_ns):
        media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if transport == "tcp":
            sig = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        else:
            sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns_socket(lab.server_ns):
        far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener = None
        if transport == "tcp":
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((peer, 5060))
            listener.listen(1)
    try:
        media.bind((lab.client_ip4, media_port))
        media.settimeout(0.2)
        msg = invite(uri, to, lab.client_ip4, media_port, f"{name}@xdpgate", transport)
        if transport == "tcp":
            sig.settimeout(2)
            sig.connect((peer, 5060))
            sig.sendall(msg)
        else:
            sig.bind((lab.client_ip4, 0))
            sig.sendto(msg, (peer, 5060))
        time.sleep(settle)  # the far end answers; the controller has labelled the call
        far.bind((peer, 0))
        for i in range(packets):
            far.sendto(rtp_packet(i), (lab.client_ip4, media_port))
        got = 0
        deadline = time.time() + 0.6
        while time.time() < deadline:
            try:
                media.recv(2048)
                got += 1
            except TimeoutError:
                pass
        label = label_of(media_port) if label_of else ""
        return CallResult(name, uri, peer, transport, packets, got, label)
    finally:
        for s in (media, sig, far, listener):
            if s is not None:
                s.close()


CALLS = [
    # name, request URI, To, peer is the carrier?, expected to pass
    ("pstn-via-carrier", "tel:+493012345678", "tel:+493012345678", True, True),
    ("pstn-via-other", "tel:+493012345678", "tel:+493012345678", False, False),
    ("pstn-user-phone", "sip:+14155550100@example.org;user=phone",
     "sip:+14155550100@example.org;user=phone", False, False),
    ("app-to-app", "sip:bob@example.org", "sip:bob@example.org", False, True),
]


def carrier_scenario(lab: Lab, ctrl, echo: Callable[[str], None] = print) -> list[CallResult]:
    """Place the scenario's calls through the running controller and print what happened."""
    from . import policy as pol

    ctrl.apply_policy(pol.from_yaml(CARRIER_POLICY), actor="scenario")

    def label_of(port: int) -> str:
        fl = ctrl.flows(port=port)
        return f"{fl[0]['app']}/{fl[0]['category']} call={fl[0]['call']} {fl[0]['verdict']}" \
            if fl else "no flow"

    results = []
    for i, (name, uri, to, via_carrier, _) in enumerate(CALLS):
        peer = lab.carrier_ip4 if via_carrier else lab.server_ip4
        results.append(place_call(lab, name=name, uri=uri, to=to, peer=peer,
                                  media_port=31000 + 2 * i, label_of=label_of))
    echo("Carrier scenario (policy: calls to the phone network only through 203.0.113.0/24):")
    for r in results:
        verdict = "PASSED" if r.media_delivered else "DROPPED"
        echo(f"  {r.name:18} {r.uri:42} via {r.peer:13} media {r.media_delivered:2}/"
             f"{r.media_sent} delivered -> {verdict:7} [{r.label}]")
    return results
