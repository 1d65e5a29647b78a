"""The engine's bookkeeping for speed keeps the verdicts: decided flows shrink to flat records,
expiry goes by time buckets, per-port candidate rows, parse memos, integer prefix match."""

from __future__ import annotations

import gc
import ipaddress
import random

from xdpgate.control.classify import appsigs, dns, netproto, sip
from xdpgate.control.classify.base import Flow
from xdpgate.control.classify.engine import Classifier, Expectation
from xdpgate.control.classify.hosts import VENDOR_PREFIXES, HostKnowledge, _PrefixTable
from xdpgate.control.classify.packet import FlowKey

from .build import CLIENT, SERVER, udp
from .test_voip_signalling import invite

DNS_QUERY = bytes.fromhex("12340100000100000000000003777777076578616d706c6503636f6d0000010001")
DNS_ANSWER = bytes.fromhex("12348180000100010000000003777777076578616d706c6503636f6d0000010001"
                           "c00c000100010000003c0004c6336407")


def test_decided_flow_keeps_no_flow_object_and_its_label():
    clf = Classifier()
    lab = clf.feed(udp(DNS_QUERY, 40000, 53, ts=1.0))
    assert lab is not None and lab.app == "dns"
    # DNS learns from the answer: still a Flow until it has seen max_packets or ... an answer
    for i in range(8):
        clf.feed(udp(DNS_ANSWER, 53, 40000, src=SERVER, dst=CLIENT, ts=1.1 + i))
    assert clf.tracked() == (0, 1)
    assert clf.knowledge.names.get("198.51.100.7") == "www.example.com"
    key = FlowKey("udp", CLIENT, 40000, SERVER, 53)
    assert clf.label_of(key) == lab
    assert clf.label_of(key.reversed()) == lab
    # later packets are neither re-labelled nor turned back into Flow objects
    assert clf.feed(udp(DNS_QUERY, 40000, 53, ts=20.0)) is None
    assert clf.tracked() == (0, 1)
    rec = next(iter(clf._done.values()))
    assert rec[0] == 20.0
    gc.collect()
    assert not gc.is_tracked(rec), "a decided flow must not be something the GC traverses"


def test_decided_flow_without_learner_is_retired_at_once():
    clf = Classifier()
    rtp = b"\x80\x00\x00\x01\x00\x00\x00\xa0\x12\x34\x56\x78" + bytes(160)
    first_label_seen = None
    for i in range(4):
        pl = bytearray(rtp)
        pl[3] = i + 1
        lab = clf.feed(udp(bytes(pl), 40000, 41000, ts=1.0 + i * 0.02))
        first_label_seen = first_label_seen or lab
    assert first_label_seen is not None and first_label_seen.category == "voip"
    assert clf.tracked() == (0, 1)


def test_sip_flow_keeps_learning_after_its_label_as_a_flat_record():
    clf = Classifier()
    lab = clf.feed(udp(invite("sip:alice@example.org", media_port=41000), 5060, 5060, ts=1.0))
    assert lab is not None and lab.app == "sip"
    assert clf.tracked() == (0, 1), "a flow waiting for its learner's packets is a flat record"
    rec = next(iter(clf._done.values()))
    gc.collect()
    assert not gc.is_tracked(rec), "a flow waiting for packets must not be something the GC traverses"
    clf.new_expectations.clear()
    assert clf.feed(udp(invite("sip:alice@example.org", media_port=42000), 5060, 5060,
                        ts=1.5)) is None
    assert any(e.port == 42000 for e in clf.new_expectations)
    assert clf.label_of(FlowKey("udp", CLIENT, 5060, SERVER, 5060)) == lab


def test_learner_stops_after_the_flows_packet_budget():
    clf = Classifier(max_packets=3)
    clf.feed(udp(invite("sip:alice@example.org", media_port=41000), 5060, 5060, ts=1.0))
    ports = []
    for i in range(4):
        clf.new_expectations.clear()
        clf.feed(udp(invite("sip:alice@example.org", media_port=42000 + 2 * i), 5060, 5060,
                     ts=2.0 + i))
        ports += [e.port for e in clf.new_expectations if e.app == "rtp"]
    assert ports == [42000, 42002], "packets 2 and 3 of a 3-packet budget are learned from"
    assert clf.tracked() == (0, 1)


def test_expiry_buckets_forget_exactly_the_idle():
    clf = Classifier()
    clf.feed(udp(DNS_QUERY, 40000, 53, ts=0.0))
    clf.feed(udp(b"\x01" * 40, 40001, 9999, ts=0.0))  # undecided
    clf.feed(udp(DNS_QUERY, 40002, 53, ts=0.0))
    clf.feed(udp(DNS_QUERY, 40002, 53, ts=100.0))  # kept alive
    clf.expire(119.0)
    assert sum(clf.tracked()) == 3
    clf.expire(121.0)
    assert sum(clf.tracked()) == 1
    assert clf.label_of(FlowKey("udp", CLIENT, 40002, SERVER, 53)) is not None
    clf.expire(219.0)
    assert sum(clf.tracked()) == 1
    clf.expire(220.5)
    assert sum(clf.tracked()) == 0
    assert not clf._flow_wheel


def test_a_budgeted_expiry_forgets_a_large_bucket_over_several_calls():
    clf = Classifier()
    for i in range(250):
        clf.feed(udp(DNS_QUERY, 20000 + i, 53, ts=0.0))
    assert clf.expire(121.0, budget=100) is True
    assert sum(clf.tracked()) == 150
    assert clf.expire(121.0, budget=100) is True
    assert clf.expire(121.0, budget=100) is False
    assert sum(clf.tracked()) == 0 and not clf._flow_wheel
    assert clf.expire(122.0, budget=100) is False


def test_expectation_expiry_and_renewal():
    clf = Classifier()
    clf.expect(Expectation("udp", "198.51.100.7", 40000, "rtp", "voip", "app", 50.0))
    clf.expect(Expectation("udp", "198.51.100.7", 40002, "rtp", "voip", "app", 50.0))
    clf.expect(Expectation("udp", "198.51.100.7", 40002, "rtp", "voip", "app", 500.0))  # renewed
    clf.expire(60.0)
    assert set(clf._expect) == {("udp", "198.51.100.7", 40002)}
    lab = clf.feed(udp(b"\x80" * 20, 50000, 40002, src="203.0.113.9", dst="198.51.100.7",
                       ts=61.0))
    assert lab is not None and lab.reason == "sdp-expected"
    clf.expire(501.0)
    assert not clf._expect


def test_port_rows_are_the_rows_a_linear_scan_would_try():
    rnd = random.Random(5)
    for mod in (netproto, appsigs):
        ports = {p for rows in mod._BY_L4.values() for r in rows if r[2] for p in r[2]}
        cands = sorted(ports) + [rnd.randrange(1, 65536) for _ in range(50)]
        for l4, rows in mod._BY_L4.items():
            for _ in range(300):
                pp = (rnd.choice(cands), rnd.choice(cands))
                want = [r for r in rows if r[2] is None or pp[0] in r[2] or pp[1] in r[2]]
                assert list(mod._rows(l4, pp)) == want, (mod.__name__, l4, pp)


def test_parse_memos_follow_the_message_not_its_address():
    a = invite("tel:+14155550123")
    b = invite("sip:alice@example.org")
    assert sip.call_kind(a) == "pstn" and sip.call_kind(b) == "app"
    assert sip.call_kind(bytes(bytearray(a))) == "pstn"
    assert sip.headers(a) is sip.headers(a)
    assert dns.parse_message(DNS_QUERY)[1] == b"www.example.com"
    assert dns.parse_message(DNS_ANSWER)[0] >> 15 == 1
    assert dns.parse_message(b"\x00" * 5) is None


def test_integer_prefix_match_agrees_with_ipaddress():
    t = _PrefixTable()
    extra = {"10.0.0.0/8": "a", "10.1.0.0/16": "b", "10.1.2.0/24": "c", "2001:db8::/32": "d",
             "2001:db8:1::/48": "e"}
    for cidr, app in {**VENDOR_PREFIXES, **extra}.items():
        t.add(cidr, app)

    def linear(addr: str):
        ip = ipaddress.ip_address(addr)
        return next((app for net, app in t.nets if ip.version == net.version and ip in net), None)

    rnd = random.Random(3)
    for cidr in [*VENDOR_PREFIXES, *extra]:
        net = ipaddress.ip_network(cidr)
        for _ in range(50):
            inside = net.network_address + rnd.randrange(net.num_addresses)
            outside = ipaddress.ip_address(rnd.getrandbits(net.max_prefixlen))
            for addr in (str(inside), str(outside)):
                assert t.lookup(addr) == linear(addr) == t.lookup(addr), addr
    assert t.lookup("not-an-address") is None
    k = HostKnowledge()
    assert k.app_for_addr("91.108.4.1") == ("telegram", "vendor-range")


def test_prefix_cache_is_bounded():
    t = _PrefixTable()
    t.CACHE_MAX = 100
    t.add("10.0.0.0/8", "a")
    for i in range(1000):
        t.lookup(f"10.0.{i // 256}.{i % 256}")
    assert len(t.cache) == 100
    assert t.lookup("10.0.3.231") == "a"


def flow_between(cport: int, sport: int) -> Flow:
    return Flow(key=FlowKey("udp", CLIENT, cport, SERVER, sport), first_ts=0.0, last_ts=0.0)


def test_a_clients_own_port_names_no_service_unless_it_may_be_the_services():
    assert flow_between(50000, 443).ports() == (443, 443)
    assert not flow_between(11211, 443).has_port(11211)  # an OS or a NAT picked it
    assert flow_between(53, 40000).ports() == (40000, 53)  # well-known: a reply seen first
    assert flow_between(3306, 51000).has_port(3306)  # the responder's looks dynamic
    assert not flow_between(40000, 50000).has_port(40000)


def test_the_packet_budget_counts_packets_the_data_path_did_not_send():
    """Samples carry their packet number: bare TCP segments the data path kept back still
    count, so a flow is decided by its fallback at the budget's last packet."""
    from .build import tcp

    clf = Classifier(max_packets=8)
    p = tcp(b"\x00\x01garbage", 40000, 443, ts=1.0)
    p.seq = 3
    assert clf.feed(p) is None and clf.opened
    p = tcp(b"\x00\x02garbage", 40000, 443, ts=1.1)
    p.seq = 7
    lab = clf.feed(p)
    assert not clf.opened
    assert lab is not None and lab.reason == "port:443"
    assert clf.tracked() == (0, 1)


def test_a_flow_first_seen_in_a_reply_keeps_its_initiator_as_the_client():
    from .build import tcp

    clf = Classifier()
    p = tcp(b"\x07\x01 a server speaks first", 7777, 40000, src=SERVER, dst=CLIENT, ts=1.0)
    p.seq, p.dir = 3, 1
    assert clf.feed(p) is None
    (f,) = clf._flows.values()
    assert (f.key.src, f.key.sport, f.key.dport) == (CLIENT, 40000, 7777)
    assert f.samples[0].dir == 1


def test_decided_flows_are_out_of_the_collectors_reach_once_the_sampler_froze_the_tables():
    """The sampler freezes what exists when it starts (gc.freeze): the classifier's tables and
    its ring of wheel buckets stay tracked, so they are frozen and never traversed again, and
    what they come to hold (flat keys and records) is dropped by the first young collection."""
    clf = Classifier()
    gc.collect()
    gc.freeze()
    try:
        for i in range(2000):
            clf.feed(udp(DNS_QUERY, 1024 + i, 53, ts=1.0))
            clf.feed(udp(b"\x80" * 20, 1024 + i, 7000, ts=1.0))
        gc.collect(0)
        collected = {id(o) for g in range(3) for o in gc.get_objects(g)}
        tables = [clf._done, clf._flows, clf._expect, clf.call_endpoints, *clf._flow_wheel.lists]
        assert not any(id(t) in collected for t in tables)
        assert len(clf._done) + len(clf._flows) == 4000 and len(clf._flow_wheel) == 4000
        assert not any(gc.is_tracked(k) for k in clf._done)
        assert not any(gc.is_tracked(r) for r in clf._done.values())
    finally:
        gc.unfreeze()


def test_a_clients_random_port_adds_no_port_rows_entry():
    rows = netproto._TABLE
    named = {port for _, port in rows._by_port}
    clients = [p for p in range(20000, 30000) if p not in named][:3000]
    rows._cache.clear()
    for p in clients:
        rows.rows("udp", (p, 9))
        rows.rows("tcp", (443, p))
    assert len(rows._cache) <= 4
