"""The controller as an operator runs it: start line, SIGHUP, SIGTERM, SIGKILL and restart,
foreign XDP programs, --keep and `xdpgate detach`, and the demo's Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.netns.traffic import UdpSink, udp_socket
from xdpgate.control import loader
from xdpgate.control.lab import Lab

XDPGATE = str(Path(sys.executable).with_name("xdpgate"))
POLICY = """
default: allow
rules:
  - {name: no-udp-7001, match: {proto: udp, dst_port: 7001}, action: drop}
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Daemon:
    """`xdpgate run` in a subprocess, with SIGINT at its default."""

    def __init__(self, lab: Lab, tmp: Path, *extra: str, policy: Path | None = None,
                 ifaces: list[str] | None = None) -> None:
        self.lab = lab
        self.policy = policy or tmp / "policy.yaml"
        if policy is None:
            self.policy.write_text(POLICY)
        args = [XDPGATE, "run", "--netns", lab.gw_ns, "--instance", lab.prefix,
                "--policy", str(self.policy), "--state-dir", str(tmp / "state"),
                "--listen", f"127.0.0.1:{free_port()}", *extra]
        for i in lab.gw_ifaces if ifaces is None else ifaces:
            args += ["--iface", i]
        self.out = tmp / f"daemon{time.monotonic_ns()}.log"
        self.f = open(self.out, "w")
        self.p = subprocess.Popen(args, stdout=self.f, stderr=subprocess.STDOUT, text=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            log = self.out.read_text()
            if text in log:
                return log
            if self.p.poll() is not None:
                raise AssertionError(f"xdpgate exited ({self.p.returncode}):\n{log}")
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} in:\n{self.out.read_text()}")

    def log(self) -> str:
        return self.out.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        rc = self.p.wait(timeout)
        self.f.close()
        return rc


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.p.poll() is None:
            d.p.kill()
            d.p.wait()
    for d in started:  # a killed or kept filter leaves pins: remove them with the lab
        for p in loader.find_pin_dirs(d.lab.prefix, d.lab.gw_ns):
            loader.remove_pins(p)


def delivered(lab: Lab, port: int, n: int = 5) -> int:
    sink = UdpSink(lab.server_ns, lab.server_ip4, port)
    s = udp_socket(lab.client_ns)
    for _ in range(n):
        s.sendto(b"x", (lab.server_ip4, port))
    s.close()
    return len(sink.close())


def test_run_prints_what_is_attached_where_and_detaches_on_sigterm(lab, tmp_path, daemons):
    d = Daemon(lab, tmp_path)
    daemons.append(d)
    line = d.wait_for("filtering on")
    for i in lab.gw_ifaces:
        assert i in line
    assert "native" in line or "skb" in line
    assert delivered(lab, 7001) == 0 and delivered(lab, 7000) == 5
    assert d.stop(signal.SIGTERM) == 0
    for i in lab.gw_ifaces:
        assert loader.xdp_state(i, lab.gw_ns)[1] == 0
    assert loader.find_pin_dirs(lab.prefix, lab.gw_ns) == []
    assert delivered(lab, 7001) == 5


def test_sigint_detaches_too(lab, tmp_path, daemons):
    d = Daemon(lab, tmp_path)
    daemons.append(d)
    d.wait_for("filtering on")
    assert d.stop(signal.SIGINT) == 0
    assert loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)[1] == 0


def test_sighup_refuses_a_bad_file_and_keeps_the_running_policy(lab, tmp_path, daemons):
    d = Daemon(lab, tmp_path)
    daemons.append(d)
    d.wait_for("filtering on")
    d.policy.write_text("default: allow\nrules:\n  - {name: x, match: {dst_port: 99999}, action: drop}\n")
    d.p.send_signal(signal.SIGHUP)
    log = d.wait_for("refused")
    assert "dst_port" in log and "line 3" in log
    assert delivered(lab, 7001) == 0
    d.policy.write_text(POLICY.replace("7001", "7002"))
    d.p.send_signal(signal.SIGHUP)
    d.wait_for("reloaded")
    assert delivered(lab, 7001) == 5 and delivered(lab, 7002) == 0


def test_a_killed_controller_leaves_the_filter_enforcing_and_a_restart_adopts_it(lab, tmp_path,
                                                                                 daemons):
    """Traffic flows; the controller is SIGKILLed and restarted. Packets the policy drops are
    never delivered in the gap, allowed traffic keeps flowing, and the flow table survives."""
    d = Daemon(lab, tmp_path)
    daemons.append(d)
    d.wait_for("filtering on")
    ok = UdpSink(lab.server_ns, lab.server_ip4, 7000)
    bad = UdpSink(lab.server_ns, lab.server_ip4, 7001)
    stop = threading.Event()

    def blast() -> None:
        s = udp_socket(lab.client_ns, sport=40000)
        while not stop.is_set():
            s.sendto(b"a", (lab.server_ip4, 7000))
            s.sendto(b"b", (lab.server_ip4, 7001))
            time.sleep(0.002)
        s.close()

    t = threading.Thread(target=blast)
    t.start()
    try:
        time.sleep(0.5)
        d.p.kill()
        d.p.wait()
        before = len(ok.got)
        time.sleep(1.5)  # the gap: no controller at all
        during = len(ok.got) - before
        assert loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)[1] != 0
        d2 = Daemon(lab, tmp_path, policy=d.policy)
        daemons.append(d2)
        line = d2.wait_for("filtering on")
        assert "adopted" in line
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    assert during > 50, "allowed traffic stopped while the controller was away"
    assert bad.close() == []
    assert len(ok.close()) > 0
    from xdpgate.control.maps import MapSet, sizes_from_pins

    pins = loader.find_pin_dirs(lab.prefix, lab.gw_ns)
    assert len(pins) == 1
    ms = MapSet.from_pins(sizes_from_pins(pins[0]), pins[0])
    try:
        from xdpgate.control import observe

        flows = [f for f in observe.flows(ms, port=7000) if f["sport"] == 40000]
        assert len(flows) == 1 and flows[0]["pkts_fwd"] > during, "the flow entry was not kept"
    finally:
        ms.close()
    assert d2.stop() == 0


def test_keep_leaves_the_filter_on_sigterm_and_detach_removes_it(lab, tmp_path, daemons):
    d = Daemon(lab, tmp_path, "--keep")
    daemons.append(d)
    d.wait_for("filtering on")
    assert d.stop(signal.SIGTERM) == 0
    assert loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)[1] != 0
    assert delivered(lab, 7001) == 0, "a kept filter must go on enforcing the policy"
    assert len(loader.find_pin_dirs(lab.prefix, lab.gw_ns)) == 1
    for i in lab.gw_ifaces:
        r = subprocess.run([XDPGATE, "detach", i, "--netns", lab.gw_ns, "--instance", lab.prefix],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)[1] == 0
    assert loader.find_pin_dirs(lab.prefix, lab.gw_ns) == []
    assert delivered(lab, 7001) == 5


def test_a_restart_with_other_sizes_unpins_the_maps_of_the_filter_it_replaced(lab, tmp_path,
                                                                               daemons):
    """An operator upgrades with --keep, or restarts with a bigger flow table: the new filter
    can't adopt the old one's maps (another layout), and once it has taken the old one's
    place on every interface it unpins them, which frees their memory. While the old filter
    still runs on an interface, its maps stay."""
    g1, g2 = lab.gw_ifaces

    def pin_dirs() -> list[Path]:
        return loader.find_pin_dirs(lab.prefix, lab.gw_ns)

    old = Daemon(lab, tmp_path, "--keep")
    daemons.append(old)
    old.wait_for("filtering on")
    assert old.stop(signal.SIGTERM) == 0
    [old_pins] = pin_dirs()
    old_prog = loader.xdp_state(g2, lab.gw_ns)[1]
    assert old_prog and loader.is_ours(old_prog)

    one = Daemon(lab, tmp_path, "--flow-max", "131072", ifaces=[g1])
    daemons.append(one)
    one.wait_for("filtering on")
    assert loader.xdp_state(g2, lab.gw_ns)[1] == old_prog  # the old filter still runs there
    assert old_pins in pin_dirs() and len(pin_dirs()) == 2
    assert delivered(lab, 7001) == 0
    assert one.stop(signal.SIGTERM) == 0
    assert pin_dirs() == [old_pins]

    new = Daemon(lab, tmp_path, "--flow-max", "65536")
    daemons.append(new)
    new.wait_for("filtering on")
    dirs = pin_dirs()
    assert len(dirs) == 1 and dirs[0] != old_pins and not old_pins.exists()
    assert "removed the pinned maps of an earlier filter" in new.log()
    assert delivered(lab, 7001) == 0 and delivered(lab, 7000) == 5
    assert new.stop(signal.SIGTERM) == 0
    assert pin_dirs() == []


def test_it_refuses_to_replace_an_xdp_program_it_did_not_load(lab, tmp_path, daemons):
    from bcc import BPF

    other = BPF(text=b"int other_prog(struct xdp_md *ctx) { return XDP_PASS; }")
    fn = other.load_func(b"other_prog", BPF.XDP)
    loader._set_xdp(loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)[0], fn.fd, 0, lab.gw_ns)
    d = Daemon(lab, tmp_path)
    assert d.p.wait(60) == 1
    log = d.log()
    assert "--force" in log and "other_prog" in log
    d2 = Daemon(lab, tmp_path, "--force")
    daemons.append(d2)
    d2.wait_for("filtering on")
    assert loader.is_ours(loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)[1])
    d2.stop()


def test_demo_builds_its_lab_and_ctrl_c_removes_everything(tmp_path):
    port = free_port()
    out = tmp_path / "demo.log"
    with open(out, "w") as f:
        p = subprocess.Popen([XDPGATE, "demo", "--state-dir", str(tmp_path / "demo"),
                              "--listen", f"127.0.0.1:{port}"], stdout=f, stderr=subprocess.STDOUT,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.time() + 90
            while "Ctrl-C" not in out.read_text():
                assert p.poll() is None, out.read_text()
                assert time.time() < deadline, out.read_text()
                time.sleep(0.2)
            assert Lab.exists("xgdemo")
            lab = Lab("xgdemo")
            assert delivered(lab, 5060) == 0  # the demo policy drops SIP signalling
            assert delivered(lab, 7000) == 5
            p.send_signal(signal.SIGINT)
            assert p.wait(30) == 0
        finally:
            if p.poll() is None:
                p.kill()
                subprocess.run([XDPGATE, "demo", "--down"], capture_output=True)
    assert not Lab.exists("xgdemo")
    assert not [n for n in os.listdir("/var/run/netns") if n.startswith("xgdemo")]
    assert "demo lab removed" in out.read_text()


CLASS_POLICY = """
default: allow
rules:
  - {name: no-voip, match: {category: voip}, action: drop}
"""


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_fail_mode_decides_unlabelled_flows_while_the_controller_is_away(lab, tmp_path, daemons,
                                                                         fail_mode):
    """With a policy that needs the classifier, a controller killed for longer than the
    heartbeat window leaves new flows to the fail mode: closed drops them, open passes them."""
    pfile = tmp_path / "class.yaml"
    pfile.write_text(CLASS_POLICY)
    d = Daemon(lab, tmp_path, "--fail-mode", fail_mode, policy=pfile)
    daemons.append(d)
    d.wait_for("filtering on")
    assert delivered(lab, 7100) == 5  # controller present: unlabelled flows follow the rules
    d.p.kill()
    d.p.wait()
    time.sleep(4.0)  # longer than the 3 s the data path waits for a heartbeat
    n = delivered(lab, 7101)
    assert n == (0 if fail_mode == "closed" else 5)


def test_stats_and_flows_read_the_pinned_maps_of_the_running_filter(lab, tmp_path, daemons):
    d = Daemon(lab, tmp_path)
    daemons.append(d)
    d.wait_for("filtering on")
    assert delivered(lab, 7001) == 0
    common = ["--pinned", "--instance", lab.prefix, "--netns", lab.gw_ns,
              "--state-dir", str(tmp_path / "state")]
    st = subprocess.run([XDPGATE, "stats", *common], capture_output=True, text=True)
    assert st.returncode == 0, st.stderr
    assert "no-udp-7001" in st.stdout and " 5 " in st.stdout
    fl = subprocess.run([XDPGATE, "flows", "--top", "5", *common], capture_output=True, text=True,
                        env={**os.environ, "COLUMNS": "250"})
    assert fl.returncode == 0, fl.stderr
    assert "7001" in fl.stdout and "drop" in fl.stdout
    d.stop()
    gone = subprocess.run([XDPGATE, "stats", *common], capture_output=True, text=True)
    assert gone.returncode == 1 and "no pinned maps" in gone.stderr


def test_errors_say_what_failed_and_what_to_do(lab, tmp_path):
    """No such interface, and not root: verb, object, cause and a hint, no traceback."""
    pfile = tmp_path / "p.yaml"
    pfile.write_text(POLICY)
    base = [XDPGATE, "run", "--policy", str(pfile), "--state-dir", str(tmp_path / "st"),
            "--listen", f"127.0.0.1:{free_port()}", "--netns", lab.gw_ns,
            "--instance", lab.prefix]
    r = subprocess.run(base + ["--iface", "nosuchif0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "nosuchif0" in r.stderr and "no such interface" in r.stderr and "ip link" in r.stderr
    assert "Traceback" not in r.stderr
    # not root: the effective uid is what xdpgate checks first (a real unprivileged user
    # may not even be able to read a checkout under /root, so fake only the uid)
    fake = ("import os, sys; os.geteuid = lambda: 1000; sys.argv[0] = 'xdpgate'; "
            "from xdpgate.control.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", fake, *base[1:], "--iface", lab.gw_ifaces[0]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "root" in r.stderr and "sudo" in r.stderr and "Traceback" not in r.stderr


def test_a_lab_left_by_a_killed_run_goes_with_its_pins_when_the_next_lab_is_made():
    """A test run SIGKILLed mid-way leaves its namespaces and the pinned maps of the
    controller it ran there; the next lab made removes them, and never a lab whose maker
    is still running."""
    import secrets

    from xdpgate.control import bpfsys
    from xdpgate.control import lab as lab_mod

    dead = "xk" + secrets.token_hex(3)
    bare = dead + "-bench"  # a namespace made as the benches make theirs (lab.record)
    pins = None
    try:
        code = (f"import os, signal, subprocess\nfrom xdpgate.control import lab\n"
                f"lab.Lab.create({dead!r})\nlab.record({bare!r}, [{bare!r}])\n"
                f"subprocess.run(['ip', 'netns', 'add', {bare!r}], check=True)\n"
                "os.kill(os.getpid(), signal.SIGKILL)\n")
        assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
        assert Lab.exists(dead) and (lab_mod.LABS / dead).exists()
        assert os.path.exists(f"/var/run/netns/{bare}")
        # what its controller had pinned in the gateway namespace
        pins = loader.PIN_ROOT / f"ns{loader.netns_inode(dead + '-g')}-{dead}-00000000aa"
        pins.mkdir(parents=True)
        fd = bpfsys.load_xdp_pass()
        try:
            bpfsys.obj_pin(fd, str(pins / "prog"))
        finally:
            os.close(fd)
        with Lab.create("xk" + secrets.token_hex(3)) as live:
            assert not Lab.exists(dead) and not (lab_mod.LABS / dead).exists()
            assert not pins.exists()
            assert not os.path.exists(f"/var/run/netns/{bare}")
            assert not (lab_mod.LABS / bare).exists()
            assert lab_mod.sweep() == [] and Lab.exists(live.prefix)  # its maker runs
        assert not (lab_mod.LABS / live.prefix).exists()
    finally:
        if pins is not None and pins.exists():
            loader.remove_pins(pins)
        Lab(dead).destroy()
        lab_mod.remove_namespaces([bare])
        lab_mod.forget(bare)


def test_a_running_controller_keeps_the_flow_tables_ages_from_wrapping(tmp_path, monkeypatch):
    """Hourly, the controller sets ways unseen for weeks back to the oldest age the table
    tells apart (control/flowtable.py, AGE_CAP); here its hour is made a heartbeat."""
    from tests.harness import idle_controller, set_way_seen, way_seen
    from xdpgate.control import controller as ctlmod, flowtable, layout

    monkeypatch.setattr(ctlmod, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(ctlmod, "AGE_CAP_EVERY_S", 0.0)
    with idle_controller(tmp_path, "ag") as c:
        maps = c.filter.maps
        key = layout.FlowKey(proto=17, port_a=1, port_b=2)
        maps.flowtable.set_many([key], [layout.Flow()])
        ancient = (flowtable.seen_now() - flowtable.AGE_CAP - 100_000) & 0xFFFFFFFF
        set_way_seen(maps, key, ancient)
        deadline = time.monotonic() + 5
        while (seen := way_seen(maps, key)) == ancient and time.monotonic() < deadline:
            time.sleep(0.05)
        age = (flowtable.seen_now() - seen) & 0xFFFFFFFF
        assert flowtable.AGE_CAP <= age < flowtable.AGE_CAP + 100_000, age
