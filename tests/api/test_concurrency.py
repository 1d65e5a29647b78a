"""Parallel rule changes from many clients: none lost, the policy consistent afterwards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from xdpgate.api.server import serve


def test_parallel_rule_posts_lose_nothing(app, tokens, ctl):
    srv = serve(app, "127.0.0.1:0")
    try:
        def worker(w: int) -> list[int]:
            codes = []
            with httpx.Client(base_url=srv.url, timeout=30,
                              headers={"Authorization": f"Bearer {tokens.admin}"}) as c:
                for i in range(25):
                    r = c.post("/api/v1/rules", json={"name": f"w{w}-r{i}", "action": "drop",
                                                      "match": {"port": 1000 + i}},
                               params={"position": 0} if i % 2 else {})
                    codes.append(r.status_code)
            return codes

        with ThreadPoolExecutor(8) as ex:
            codes = [c for cs in ex.map(worker, range(8)) for c in cs]
    finally:
        srv.stop()
    assert codes == [201] * 200
    policy, etag = ctl.get_policy()
    got = [r.name for r in policy.rules]
    assert sorted(got) == sorted(f"w{w}-r{i}" for w in range(8) for i in range(25))
    assert len(set(got)) == 200 and etag == '"v200"'
    for w in range(8):  # each writer's appended rules stay in its own order
        mine = [n for n in got if n.startswith(f"w{w}-") and int(n.split("-r")[1]) % 2 == 0]
        assert mine == sorted(mine, key=lambda n: int(n.split("-r")[1]))


def test_parallel_put_and_delete_of_one_rule_end_consistent(api, app, tokens, ctl):
    api.post("/api/v1/rules", json={"name": "x", "action": "drop"})
    srv = serve(app, "127.0.0.1:0")
    try:
        def flip(i: int) -> int:
            with httpx.Client(base_url=srv.url, timeout=30,
                              headers={"Authorization": f"Bearer {tokens.admin}"}) as c:
                if i % 2:
                    return c.delete("/api/v1/rules/x").status_code
                return c.put("/api/v1/rules/x", json={"name": "x", "action": "allow"}).status_code

        with ThreadPoolExecutor(8) as ex:
            codes = list(ex.map(flip, range(40)))
    finally:
        srv.stop()
    assert set(codes) <= {200, 404} and codes.count(200) >= 1
    names = [r.name for r in ctl.get_policy()[0].rules]
    assert names in ([], ["x"])
