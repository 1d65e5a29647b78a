"""The offline `classify` contract (jsonl keys and types, one line per flow), capture formats
and tunnels, the taxonomy ids, and the dataset score (marker `dataset`)."""

from __future__ import annotations

import io
import json
import os
import shlex
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dpkt
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from xdpgate.control.classify import taxonomy
from xdpgate.control.classify.offline import classify_capture, main_classify

from .build import tcp, udp

SIP = (b"INVITE sip:bob@example.org SIP/2.0\r\nCall-ID: 1@h\r\nCSeq: 1 INVITE\r\n"
       b"Content-Length: 0\r\n\r\n")
DNSQ = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01"
KEYS = {"l4", "src", "sport", "dst", "dport", "app", "category", "confidence", "reason",
        "packets", "bytes", "call"}


def write_pcap(path: Path, frames: list[bytes], linktype: int = dpkt.pcap.DLT_EN10MB) -> None:
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=linktype)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1000.0 + i * 0.01)


def eth(ip_bytes: bytes) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(ip_bytes))


def test_jsonl_has_exactly_the_contract_keys_one_line_per_flow(tmp_path):
    frames = [eth(udp(SIP, 5060, 5060).data), eth(udp(SIP, 5060, 5060).data),
              eth(udp(DNSQ, 40000, 53).data), eth(tcp(b"GET / HTTP/1.1\r\n\r\n", 40001, 80).data),
              b"\x00" * 10]  # a malformed frame must be skipped, not crash
    cap = tmp_path / "small.pcap"
    write_pcap(cap, frames)
    out = io.StringIO()
    assert main_classify(str(cap), "jsonl", out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    recs = [json.loads(line) for line in lines]
    for r in recs:
        assert set(r) == KEYS
        assert isinstance(r["sport"], int) and isinstance(r["dport"], int)
        assert isinstance(r["packets"], int) and isinstance(r["bytes"], int)
        assert isinstance(r["confidence"], float) and 0.0 <= r["confidence"] <= 1.0
        assert r["category"] in taxonomy.CATEGORIES and r["app"] in taxonomy.APPS
        assert r["call"] in taxonomy.CALL_KINDS
    sip = next(r for r in recs if r["app"] == "sip")
    assert (sip["packets"], sip["category"], sip["call"]) == (2, "voip", "app")


def test_table_format_prints_a_header_and_one_row_per_flow(tmp_path):
    cap = tmp_path / "t.pcap"
    write_pcap(cap, [eth(udp(DNSQ, 40000, 53).data)])
    out = io.StringIO()
    assert main_classify(str(cap), "table", out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:5] == ["l4", "src", "sport", "dst", "dport"]
    assert len(lines) == 2 and "dns" in lines[1]


def test_unreadable_capture_is_an_error_not_a_crash(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    assert main_classify(str(bad), "jsonl", out=io.StringIO()) != 0


def test_vlan_tagged_frames_and_raw_ip_links_are_read(tmp_path):
    ipb = udp(DNSQ, 40000, 53).data
    tagged = bytes(Ether() / Dot1Q(vlan=5) / Dot1Q(vlan=7) / IP(ipb))
    cap1 = tmp_path / "qinq.pcap"
    write_pcap(cap1, [tagged])
    cap2 = tmp_path / "raw.pcap"
    write_pcap(cap2, [ipb], linktype=dpkt.pcap.DLT_RAW)
    for cap in (cap1, cap2):
        (rec,) = classify_capture(str(cap))
        assert rec.app == "dns"


def test_flows_inside_vxlan_and_gtpu_are_keyed_by_the_inner_tuple(tmp_path):
    inner = udp(SIP, 5060, 5060, src="10.9.0.1", dst="10.9.0.2").data
    inner_eth = bytes(Ether() / IP(inner))
    vx = struct.pack("!BxxxI", 0x08, 42 << 8) + inner_eth
    gtp = struct.pack("!BBHI", 0x30, 0xFF, len(inner), 0x1234) + inner
    frames = [eth(bytes(IP(src="172.16.0.1", dst="172.16.0.2") / UDP(sport=5555, dport=4789)
                        / Raw(vx))),
              eth(bytes(IP(src="172.16.0.3", dst="172.16.0.4") / UDP(sport=2152, dport=2152)
                        / Raw(gtp)))]
    cap = tmp_path / "tun.pcap"
    write_pcap(cap, frames)
    recs = classify_capture(str(cap))
    assert len(recs) == 2, "same inner tuple in two tunnels must stay two flows"
    assert {r.tunnel[0] for r in recs} == {"vxlan", "gtpu"}
    assert all((r.src, r.app) == ("10.9.0.1", "sip") for r in recs)


def test_the_classifier_sees_at_most_max_packets_but_all_are_counted(tmp_path):
    frames = [eth(udp(os.urandom(100), 40000, 40001, ts=i).data) for i in range(20)]
    cap = tmp_path / "many.pcap"
    write_pcap(cap, frames)
    (rec,) = classify_capture(str(cap), max_packets=3)
    assert rec.packets == 20 and rec.bytes == 20 * (20 + 8 + 100)


def _tls_hello() -> bytes:
    return bytes.fromhex("160301002c0100002803030000000000000000000000000000000000000000000000"
                         "000000000000000000020013010100")


def test_bare_tcp_segments_are_counted_in_the_budget_but_not_fed(tmp_path, monkeypatch):
    """As the data path samples: the handshake uses three of the eight places, the first
    payload is packet number 3, and a flow that never carried payload is still labelled
    (by its port) when the capture ends."""
    from xdpgate.control.classify import offline

    fed = []
    real = offline.Classifier.feed
    monkeypatch.setattr(offline.Classifier, "feed", lambda self, p: fed.append(p) or real(self, p))
    c, s = "10.9.0.1", "10.9.0.2"
    frames = [eth(tcp(b"", 40000, 443, src=c, dst=s, flags="S").data),
              eth(tcp(b"", 443, 40000, src=s, dst=c, flags="SA").data),
              eth(tcp(b"", 40000, 443, src=c, dst=s, flags="A").data),
              eth(tcp(_tls_hello(), 40000, 443, src=c, dst=s).data),
              eth(tcp(b"", 40001, 443, src=c, dst=s, flags="S").data),
              eth(tcp(b"", 40001, 443, src=c, dst=s, flags="S").data)]
    cap = tmp_path / "hs.pcap"
    write_pcap(cap, frames)
    recs = {r.sport: r for r in classify_capture(str(cap))}
    assert [(p.seq, p.dir) for p in fed] == [(3, 0), (1, 0)]
    assert recs[40000].packets == 4 and recs[40000].app == "tls"
    assert recs[40001].packets == 2 and (recs[40001].app, recs[40001].reason) == ("tls", "port:443")


def test_taxonomy_ids_are_stable_and_reversible():
    assert taxonomy.CATEGORIES[0] == "unknown" and taxonomy.APPS[0] == "unknown"
    assert len(taxonomy.APPS) <= 1024
    for name in ("voip", "chat", "streaming", "p2p", "vpn", "web", "dns", "game", "network",
                 "other", "unknown"):
        assert taxonomy.category_name(taxonomy.category_id(name)) == name
    assert taxonomy.app_name(taxonomy.app_id("whatsapp-call")) == "whatsapp-call"
    with pytest.raises(KeyError):
        taxonomy.app_id("no-such-app")
    with pytest.raises(ValueError):
        taxonomy.category_name(99)
    assert taxonomy.CALL_KINDS == ("none", "app", "pstn")


def test_every_app_the_tables_can_emit_has_an_id():
    from xdpgate.control.classify import hosts, ports

    emitted = set(hosts.HOST_SUFFIXES.values()) | {a for _, a in hosts.HOST_WORDS}
    emitted |= set(hosts.VENDOR_PREFIXES.values()) | {a for _, a in hosts.HOST_PATTERNS}
    emitted |= {a for a in ports.PORTS.values() if a in taxonomy.APP_CATEGORY}
    missing = sorted(a for a in emitted - {"unknown"} if a not in taxonomy.APPS)
    assert not missing, f"apps without an id: {missing}"


SHARED = Path(__file__).resolve().parents[4] / "shared"
DATA = SHARED / "datasets" / "ndpi-dev"
FLOW_EVAL = SHARED / "tools" / "flow-eval"


# Regression floors: a little (0.01) below what the classifier scored when they were set
# (normal: voip F1 0.960 by flows and 0.966 by bytes, category accuracy 0.947; --dpi-only:
# category accuracy 0.952).  The targets are reported by flow-eval, not asserted here.
FLOORS = {"voip_f1": 0.95, "voip_f1_bytes": 0.955, "category_acc": 0.937}
FLOORS_DPI_ONLY = {"voip_f1": 0.95, "category_acc": 0.942}


@pytest.fixture(scope="module")
def classified(tmp_path_factory) -> Path:
    """What the offline classifier prints for each labelled capture, run once for both scoring
    modes and on every CPU: the command flow-eval would run, with each capture's stdout, stderr
    and exit status kept for flow-eval to score as if it had run the command itself."""
    if not (DATA / "labels.jsonl").exists() or not FLOW_EVAL.exists():
        pytest.skip("../shared/datasets/ndpi-dev is not here")
    labels = (DATA / "labels.jsonl").read_text().splitlines()
    names = sorted({json.loads(line)["pcap"] for line in labels if line.strip()})
    out = tmp_path_factory.mktemp("classified")

    def run(name: str) -> None:
        p = subprocess.run([sys.executable, "-m", "xdpgate.control.classify.offline",
                            "--format", "jsonl", str(DATA / "pcap" / name)],
                           capture_output=True, timeout=600)
        (out / f"{name}.out").write_bytes(p.stdout)
        (out / f"{name}.err").write_bytes(p.stderr)
        (out / f"{name}.rc").write_text(str(p.returncode))

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(run, names))
    return out


def _flow_eval(classified: Path, *extra: str) -> tuple[dict, str]:
    d = shlex.quote(str(classified))
    replay = (f'n=$(basename {{pcap}}); cat {d}/"$n".out; cat {d}/"$n".err >&2; '
              f'exit "$(cat {d}/"$n".rc)"')
    p = subprocess.run([sys.executable, str(FLOW_EVAL), "--data", str(DATA), "--cmd", replay,
                        "--json", *extra], capture_output=True, text=True, timeout=600)
    lines = p.stdout.strip().splitlines()
    return json.loads(lines[-2]), lines[-1]


@pytest.mark.dataset
@pytest.mark.parametrize("mode", ["normal", "dpi-only"])
def test_ndpi_dev_scores_do_not_regress(mode, classified):
    got, last = _flow_eval(classified, *(["--dpi-only"] if mode == "dpi-only" else []))
    for key, floor in (FLOORS if mode == "normal" else FLOORS_DPI_ONLY).items():
        assert float(got[key]) >= floor, (key, last)
    assert float(got["missed"]) < 0.01, last
