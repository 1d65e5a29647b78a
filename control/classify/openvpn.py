"""OpenVPN: the hard-reset opcodes that open a session (P_CONTROL_HARD_RESET_CLIENT_V1/V2/V3)
with a session id and packet-id 0, over UDP or TCP (two-byte length first)."""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Spec, app_label

SPEC = Spec("openvpn", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=2, priority=49)

RESET_CLIENT = frozenset({1, 7, 10})  # opcodes
RESET_SERVER = frozenset({2, 8})


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if flow.l4 == "tcp":
        if len(pl) < 3 or struct.unpack_from("!H", pl, 0)[0] != len(pl) - 2:
            return GIVE_UP
        pl = pl[2:]
    if len(pl) < 14:
        return GIVE_UP
    op = pl[0] >> 3
    if flow.last.dir == 0 and op in RESET_CLIENT and flow.npayload == 1:
        flow.state["ovpn"] = pl[1:9]
        if flow.has_port(1194):
            return app_label("openvpn", "openvpn-hard-reset", 0.45, l4=flow.l4)
        return None  # alone too weak off its port: wait for the server's reset
    if flow.last.dir == 1 and op in RESET_SERVER and "ovpn" in flow.state:
        return app_label("openvpn", "openvpn-reset-pair", 0.9, l4=flow.l4)
    return GIVE_UP
