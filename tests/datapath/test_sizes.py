"""Load-time sizes: the flow table loads and works at 4,194,304 entries."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.harness import XDP_PASS
from xdpgate.control import bpfsys, layout, loader
from xdpgate.control.layout import Sizes


def test_a_flow_table_of_4_million_entries_loads_and_tracks_flows():
    flt = loader.load(Sizes(flow_max=4_194_304), pin=False)
    try:
        assert bpfsys.map_info(flt.maps["flows"].fd).max_entries == 4_194_304
        for i in range(3):
            frame = Ether() / IP(src=f"10.9.0.{i + 1}", dst="10.9.1.1") / UDP(sport=1000, dport=53)
            assert bpfsys.test_run(flt.prog_fd, bytes(frame))[0] == XDP_PASS
        assert len(flt.maps.flowtable) == 3
    finally:
        flt.close()


def test_sizes_reject_impossible_values():
    import pytest

    for bad in ({"rule_max": 100}, {"tunnel_depth": 3}, {"ringbuf_pages": 1000}, {"flow_max": 0},
                {"flow_max": 1001}):
        with pytest.raises(ValueError):
            Sizes(**bad)
    assert layout.Sizes().rule_max == 256
