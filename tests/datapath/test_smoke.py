"""The first story: a policy with a set, a port rule and a source block, enforced per packet."""

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from tests.harness import XDP_DROP, XDP_PASS
from xdpgate.control.layout import Reason, Verdict

E = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
POLICY = """
default: allow
sets:
  carriers: [203.0.113.0/24, 2001:db8:100::/48]
rules:
  - {name: carriers-pass, match: {ip_set: carriers}, action: allow}
  - {name: no-sip-signalling, match: {proto: udp, dst_port: 5060-5061}, action: drop}
  - {name: blocklist, match: {src: 198.51.100.0/24}, action: drop}
"""


def test_sip_signalling_is_dropped_unless_a_carrier_is_an_endpoint(dp):
    dp.apply(POLICY)
    sip = UDP(sport=4000, dport=5060) / b"INVITE sip:bob@example.org SIP/2.0\r\n"
    assert dp.run(E / IP(src="10.0.0.1", dst="10.0.0.2") / sip) == XDP_DROP
    assert dp.run(E / IP(src="203.0.113.5", dst="10.0.0.2") / sip) == XDP_PASS
    assert dp.run(E / IPv6(src="2001:db8::1", dst="2001:db8::2") / sip) == XDP_DROP
    assert dp.run(E / IPv6(src="2001:db8:100::7", dst="2001:db8::2") / sip) == XDP_PASS
    assert dp.count(Reason.RULE, Verdict.DROP) == 2
    assert dp.count(Reason.RULE, Verdict.PASS) == 2


def test_web_passes_by_default_and_a_blocked_source_is_dropped(dp):
    dp.apply(POLICY)
    assert dp.run(E / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80)) == XDP_PASS
    assert dp.run(E / IP(src="198.51.100.9", dst="10.0.0.2") / TCP(dport=80)) == XDP_DROP
    assert dp.count(Reason.DEFAULT, Verdict.PASS) == 1
    hits = dp.ap.rule_hits()
    assert hits["blocklist"][0] == 1
