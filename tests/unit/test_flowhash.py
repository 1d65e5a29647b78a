"""The flow hash spreads the flows an operator's link carries over the table's sets: the
near-identical keys of one busy host, a scanned subnet, or single-bit differences anywhere
in the key (the data path computes the same function: tests/datapath/test_flowtable.py)."""

from __future__ import annotations

import collections
import random
import struct

from xdpgate.control import flowtable

NSETS = 32768  # the default table (262,144 entries)


def v4_key(a: int, b: int, pa: int, pb: int, proto: int = 17) -> bytes:
    mapped = b"\0" * 10 + b"\xff\xff"
    return (mapped + a.to_bytes(4, "big") + mapped + b.to_bytes(4, "big")
            + struct.pack("!HHBB", pa, pb, proto, 0) + b"\0\0" + struct.pack("<I", 0))


def seeds(n: int) -> list[int]:
    rnd = random.Random(11)
    return [rnd.getrandbits(64) for _ in range(n)]


def occupancy(keys, seed) -> collections.Counter:
    return collections.Counter(flowtable.place(flowtable.flow_hash(k, seed), NSETS)[0]
                               for k in keys)


def test_one_busy_host_and_one_scanned_subnet_fill_sets_evenly():
    server = 0x0A000001
    host_ports = [v4_key(0x0A000002, server, p, 443) for p in range(1024, 1024 + 65536 // 2)]
    subnet = [v4_key(0x0A010000 + i, server, 40000, 80) for i in range(32768)]
    for keys in (host_ports, subnet):
        for hk in seeds(3):
            occ = occupancy(keys, hk)
            # 32768 flows in 32768 sets: Poisson(1); a set past 8 ways (an early eviction)
            # happens about once per table of this load at random, a weak hash does it often
            assert max(occ.values()) <= 9, "flows crowd into a few sets"
            assert len(occ) > 0.6 * NSETS  # Poisson(1) leaves 37 % of the sets empty


def test_a_single_bit_anywhere_in_the_key_changes_the_set_or_the_tag():
    base = v4_key(0xC0A80001, 0xC0A80002, 5060, 5060)
    for hk in seeds(4):
        seen = {flowtable.place(flowtable.flow_hash(base, hk), NSETS)}
        for bit in range(len(base) * 8):
            k = bytearray(base)
            k[bit // 8] ^= 1 << (bit % 8)
            where = flowtable.place(flowtable.flow_hash(bytes(k), hk), NSETS)
            assert where not in seen, f"bit {bit} of the key does not reach the hash"
            seen.add(where)


def test_two_tables_place_the_same_flows_differently():
    keys = [v4_key(0x0A000002, 0x0A000001, p, 53) for p in range(2000)]
    a, b = seeds(2)
    same = sum(flowtable.place(flowtable.flow_hash(k, a), NSETS)[0] ==
               flowtable.place(flowtable.flow_hash(k, b), NSETS)[0] for k in keys)
    assert same < 10, "the random seed does not decide where flows go"


def test_flows_that_crowd_one_set_have_their_second_sets_spread_over_the_table():
    """A flow's second set does not follow from its first, so the flows of a crowded set
    overflow into sets of their own, not into one other crowded set."""
    keys = [v4_key(0x0A000002, 0x0A000001, p, 443) for p in range(1024, 65536)]
    for hk in seeds(3):
        both: dict[int, list[int]] = collections.defaultdict(list)
        for k in keys:
            first, second, _ = flowtable.place(flowtable.flow_hash(k, hk), NSETS)
            both[first].append(second)
        crowd = [seconds for seconds in both.values() if len(seconds) >= 5]
        assert crowd, "64,512 flows in 32,768 sets crowd some"
        for seconds in crowd:
            assert len(set(seconds)) >= len(seconds) - 1, "crowded flows share a second set"
        same = sum(first in seconds for first, seconds in both.items())
        assert same < 10, "a flow's second set is its first"
