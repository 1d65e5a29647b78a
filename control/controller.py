"""The controller: one object that owns a filter instance and everything around it.

It loads (or adopts) the data path, applies policies atomically, keeps sets,
attaches interfaces, runs the sampler and a heartbeat, persists state, and
answers the CLI and the REST API. Every change goes through `_commit`, under one
lock: validate, compile, apply (bank flip), persist, audit. On any failure the
running policy stays and the error says why.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, compile as comp, loader, observe
from . import policy as pol
from .apply import Applier
from .errors import XgError
from .layout import Sizes
from .policy import Policy, PolicyError, SetFile
from .sets import Prefix, parse_lines, parse_prefix, prefix_str
from .state import StateDir, atomic_write

log = logging.getLogger("xdpgate")

AWAY_NS = 3_000_000_000  # the data path treats the controller as away after this silence
HEARTBEAT_S = 1.0
AGE_CAP_EVERY_S = 3600.0  # the flow table's way ages are kept from wrapping (flowtable.AGE_CAP)
INLINE_SET_MAX = 1000  # bigger sets are kept as files in the state dir


class ConflictError(Exception):
    """The If-Match etag does not match the running policy."""


class NotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


@dataclass
class RunConfig:
    ifaces: list[str] = field(default_factory=list)
    mode: str = "native"
    policy_file: Path | None = None
    state_dir: Path = Path("/var/lib/xdpgate")
    instance: str = "default"
    netns: str | None = None
    sizes: Sizes = field(default_factory=Sizes)
    fail_mode: str = "open"  # open | closed
    sample_pkts: int = 8
    keep: bool = False
    force: bool = False
    classify: bool = True


_CUT_MAX = 16  # set-file lines removed one by one; more are filtered in one pass


def _without_line(text: str, line: str) -> str | None:
    """`text` without its one line `line` (with its newline); None when it has none."""
    if text.startswith(line):
        return text[len(line):]
    i = text.find("\n" + line)
    return None if i < 0 else text[:i + 1] + text[i + 1 + len(line):]


def policy_without_set(policy: Policy, name: str) -> Policy:
    """`policy` with set `name` deleted, validated; refused while a rule names the set."""
    if name not in policy.sets:
        raise NotFound(f"no set named {name!r}")
    new = policy.model_copy(deep=True)
    del new.sets[name]
    try:
        return pol.revalidated(new)
    except PolicyError as e:
        raise PolicyError([{"loc": ["sets", name],
                            "msg": f"set {name!r} is used by a rule: {e}"}]) from None


class _InSet:
    """`p in _InSet(own, name)`: is prefix p in set `name`, by a compile's own table."""

    def __init__(self, own: dict[Prefix, frozenset[str]], name: str) -> None:
        self.own, self.name = own, name

    def __contains__(self, p: object) -> bool:
        return self.name in self.own.get(p, ())  # type: ignore[call-overload]


class Controller:
    def __init__(self, cfg: RunConfig) -> None:
        loader.preflight()  # not root, no headers, no bcc, no bpffs: say so before anything
        self.cfg = cfg
        self.version = __version__
        self.state = StateDir(cfg.state_dir)
        self.state_dir = self.state.root
        self.lock = threading.RLock()
        self.filter: loader.Filter | None = None
        self.applier: Applier | None = None
        self.sampler: Any = None
        self.policy = Policy()
        self.policy_version = 0
        self.policy_load_errors = 0
        self.attached: dict[str, loader.Attached] = {}
        self.started = time.time()
        self._resolved: dict[Any, list[Prefix]] = {}
        self._hb_stop = threading.Event()
        self._hb: threading.Thread | None = None
        # set after each apply: the standby thread then brings the inactive bank up to it
        # where the next apply would otherwise rewrite it whole (Applier.catch_up)
        self._standby_due = threading.Event()
        self._standby: threading.Thread | None = None
        try:
            from .metrics import Metrics

            self.metrics: Any = Metrics(self)
        except ImportError:
            self.metrics = None

    # ---- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        c = self.cfg
        policy = self._startup_policy()
        self.filter = loader.load(c.sizes, instance=c.instance, netns=c.netns, pin=True)
        self.applier = Applier(self.filter.maps)
        if not self.filter.adopted:
            self.applier.assume_empty()
        elif self.state.policy_file.exists():
            # the running filter counted its rules by the last policy we persisted
            try:
                running = pol.load_file(self.state.policy_file)
                names = [r.name for r in running.rules]
                self.applier.adopted_names[self.applier.active_bank()] = names
                self.applier.gen_names[self.applier.gen] = names
            except PolicyError:
                pass  # only the rule names of old counters are lost
        try:
            self._commit(policy, actor="startup", what="start", persist=True, bump=True)
            self.applier.write_config(sample_pkts=c.sample_pkts if c.classify else 0,
                                      fail_closed=int(c.fail_mode == "closed"), away_ns=AWAY_NS,
                                      heartbeat_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC))
            for ifname in c.ifaces:
                self._attach(ifname, c.mode, force=c.force)
            if self.filter.pin_dir is not None:
                self._drop_superseded_pins(self.filter.pin_dir)
            if c.classify:
                from .sampler import Sampler

                self.sampler = Sampler(self.filter.bpf, self.filter.maps, max_packets=c.sample_pkts)
                self.sampler.start()
            self._hb = threading.Thread(target=self._heartbeat, name="xdpgate-heartbeat",
                                        daemon=True)
            self._hb.start()
            self._standby = threading.Thread(target=self._standby_loop, name="xdpgate-standby",
                                             daemon=True)
            self._standby.start()
        except BaseException:
            self.stop(keep=False)
            raise

    def _startup_policy(self) -> Policy:
        """The state dir's policy, unless the policy file is new or changed since it was saved."""
        meta = self.state.read_meta()
        self.policy_version = int(meta.get("policy_version", 0))
        f = self.cfg.policy_file
        if f is not None:
            digest = hashlib.sha256(Path(f).read_bytes()).hexdigest() if Path(f).exists() else ""
            if digest != meta.get("policy_file_sha256") or not self.state.policy_file.exists():
                p = pol.load_file(f)
                self._file_digest = digest
                self._policy_base = Path(f).resolve().parent
                return p
        if self.state.policy_file.exists():
            self._policy_base = self.state.root
            return pol.load_file(self.state.policy_file)
        self._policy_base = Path.cwd()
        return Policy()

    def stop(self, keep: bool | None = None) -> None:
        """Stop; without keep, detach from every interface and remove the pins."""
        keep = self.cfg.keep if keep is None else keep
        self._hb_stop.set()
        self._standby_due.set()
        if self._standby is not None:  # not while it writes a bank: the maps close below
            self._standby.join()
            self._standby = None
        if self._hb is not None:  # nor while it reads the flow table
            self._hb.join()
            self._hb = None
        if self.sampler is not None:
            self.sampler.stop()
        if not keep:
            for name, att in list(self.attached.items()):
                try:
                    loader.detach(att.ifname, att.netns)
                except Exception as e:  # keep going: detach everything we can
                    log.warning("couldn't detach from %s: %s", name, e)
                self.attached.pop(name, None)
        flt = self.filter
        if flt is not None:
            pin_dir = flt.pin_dir
            flt.maps.close()
            flt.close()
            if not keep and pin_dir is not None:
                loader.remove_pins(pin_dir)
            self.filter = None

    def _drop_superseded_pins(self, current: Path) -> None:
        """Unpin the maps of an earlier filter of this instance that this one replaced (an
        upgrade with another map layout, a restart with other sizes): nothing can adopt
        them, and pinned they would hold their memory until a reboot."""
        try:
            dirs = loader.superseded_pin_dirs(self.cfg.instance, self.cfg.netns, current)
            for d in dirs:
                loader.remove_pins(d)
        except Exception as e:  # noqa: BLE001 - the filter runs all the same
            log.warning("couldn't remove the pins of an earlier filter: %s", e)
            return
        for d in dirs:
            log.warning("removed the pinned maps of an earlier filter of instance %s (another "
                        "layout or other sizes; its flows are not carried over): %s",
                        self.cfg.instance, d)

    def _heartbeat(self) -> None:
        # Not under self.lock: a policy load of millions of prefixes holds it for seconds,
        # longer than the data path waits (AWAY_NS) before a fail-closed link drops new flows.
        capped_at = time.monotonic()
        while not self._hb_stop.wait(HEARTBEAT_S):
            try:
                ap = self.applier
                if ap is not None:
                    ap.write_config(heartbeat_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC))
            except Exception:
                log.exception("heartbeat failed")
            flt = self.filter
            if flt is not None and time.monotonic() - capped_at >= AGE_CAP_EVERY_S:
                capped_at = time.monotonic()
                try:
                    n = flt.maps.flowtable.cap_ages()
                    if n:
                        log.info("flow table: %d flows unseen for weeks set back to the oldest "
                                 "age the table tells apart", n)
                except Exception:
                    log.exception("keeping the flow table's ages from wrapping failed")

    def _standby_loop(self) -> None:
        while True:
            self._standby_due.wait()
            if self._hb_stop.is_set():
                return
            self._standby_due.clear()
            try:
                if self.applier is not None:
                    self.applier.catch_up()
            except Exception:
                log.exception("bringing the standby bank up to date failed")

    # ---- the one way to change the policy --------------------------------------
    def _resolve(self, policy: Policy) -> dict[str, list[Prefix]]:
        out = {}
        for name, d in policy.sets.items():
            if isinstance(d, SetFile):
                path = Path(d.file)
                if not path.is_absolute():
                    path = getattr(self, "_policy_base", Path.cwd()) / path
                try:
                    st = path.stat()
                except OSError as e:
                    raise PolicyError([{"loc": ["sets", name, "file"],
                                        "msg": f"can't read {path}: {e.strerror}"}]) from None
                key: Any = ("file", str(path), st.st_mtime_ns, st.st_size)
                if key not in self._resolved:
                    with open(path) as f:
                        got = parse_lines(f, f"sets.{name} ({path})")
                    self._cache_file(key, got)
            else:
                key = ("inline", tuple(d))
                if key not in self._resolved:
                    self._resolved[key] = parse_lines(d, f"sets.{name}")
            out[name] = self._resolved[key]
        if len(self._resolved) > 64:  # forget what no policy uses any more
            keep = {("inline", tuple(d)) for d in policy.sets.values() if not isinstance(d, SetFile)}
            self._resolved = {k: v for k, v in self._resolved.items() if k in keep or k[0] == "file"}
        return out

    def _cache_file(self, key: tuple, prefixes: list[Prefix]) -> None:
        """Keep a set file's prefixes, forgetting earlier versions of the same file (a set
        edited every minute would otherwise keep a list per edit)."""
        self._resolved = {k: v for k, v in self._resolved.items()
                          if k[0] != "file" or k[1] != key[1]}
        self._resolved[key] = prefixes

    def _compile(self, policy: Policy, hints: dict | None = None) -> comp.Wanted:
        """Compile `policy`, starting from the policy applied last (a set edit or a rule
        edit then costs what it changed, not the size of the sets)."""
        ap = self.applier
        return comp.compile_policy(policy, self._resolve(policy), self.cfg.sizes,
                                   ap.classes if ap else None, prev=ap.last if ap else None,
                                   hints=hints)

    def _commit(self, policy: Policy, *, actor: str, what: str, if_match: str | None = None,
                persist: bool = True, bump: bool = True, hints: dict | None = None) -> str:
        with self.lock:
            if if_match is not None and if_match.strip() not in (self.etag, "*"):
                raise ConflictError(f"the policy changed (now {self.etag}); re-read it and retry")
            try:
                wanted = self._compile(policy, hints)
                if self.applier is not None:
                    self.applier.apply(wanted)
                    self._standby_due.set()
            except (PolicyError, XgError):
                self.policy_load_errors += 1
                raise
            self.policy = policy
            if bump:
                self.policy_version += 1
            if persist:
                self._persist()
            self.state.audit(actor, what, {"policy_version": self.policy_version,
                                           "rules": len(policy.rules), "sets": len(policy.sets)})
            log.info("policy version %d applied (%s by %s)", self.policy_version, what, actor)
            return self.etag

    def _persist(self) -> None:
        atomic_write(self.state.policy_file, pol.to_yaml(self.policy))
        meta = self.state.read_meta()
        meta["policy_version"] = self.policy_version
        if getattr(self, "_file_digest", None):
            meta["policy_file_sha256"] = self._file_digest
        self.state.write_meta(meta)

    @property
    def etag(self) -> str:
        return f'"v{self.policy_version}"'

    # ---- policy ------------------------------------------------------------------
    def get_policy(self) -> tuple[Policy, str]:
        with self.lock:
            return self.policy.model_copy(deep=True), self.etag

    def validate_policy(self, policy: Policy) -> list[str]:
        self._check_api_files(policy)
        with self.lock:
            self._compile(policy)
        warnings = []
        if policy.default == "drop" and not policy.rules:
            warnings.append("default drop with no rules drops everything")
        return warnings

    def apply_policy(self, policy: Policy, *, actor: str, if_match: str | None = None) -> str:
        if actor not in ("startup", "sighup", "cli"):
            self._check_api_files(policy)
        return self._commit(policy, actor=actor, what="policy.apply", if_match=if_match)

    def reload_file(self) -> str:
        """SIGHUP: re-read the policy file; a bad file is refused and the running policy stays."""
        f = self.cfg.policy_file
        if f is None:
            raise XgError("reload policy", "(no --policy file)", "nothing to re-read")
        try:
            p = pol.load_file(f)
        except PolicyError:
            self.policy_load_errors += 1
            raise
        self._file_digest = hashlib.sha256(Path(f).read_bytes()).hexdigest()
        self._policy_base = Path(f).resolve().parent
        return self._commit(p, actor="sighup", what="policy.reload")

    def edit_policy(self, fn: Callable[[Policy], Policy], *, actor: str, what: str,
                    if_match: str | None = None) -> str:
        with self.lock:
            new = fn(self.policy.model_copy(deep=True))
            new = pol.revalidated(new)
            return self._commit(new, actor=actor, what=what, if_match=if_match)

    def _check_api_files(self, policy: Policy) -> None:
        """Through the API, set files may only come from the state dir or /etc/xdpgate."""
        allowed = (self.state.sets_dir.resolve(), Path("/etc/xdpgate"))
        for name, d in policy.sets.items():
            if isinstance(d, SetFile):
                p = Path(d.file).resolve()
                if not any(p.is_relative_to(a) for a in allowed):
                    raise PolicyError([{"loc": ["sets", name, "file"],
                                        "msg": "set files must be under /etc/xdpgate or the "
                                               "state dir; upload entries instead"}])

    # ---- sets ----------------------------------------------------------------------
    def _prefixes(self, name: str) -> list[Prefix]:
        d = self.policy.sets.get(name)
        if d is None:
            raise NotFound(f"no set named {name!r}")
        return self._resolve(self.policy)[name]

    def get_set(self, name: str) -> list[str]:
        with self.lock:
            return [prefix_str(p) for p in self._prefixes(name)]

    def sets_summary(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for name, d in self.policy.sets.items():
                if isinstance(d, SetFile):
                    api = Path(d.file).resolve().parent == self.state.sets_dir.resolve()
                    src = "api" if api else "file"
                else:
                    src = "inline"
                out.append({"name": name, "count": len(self._prefixes(name)), "source": src})
            return out

    @staticmethod
    def _parse_entries(entries: list[str] | str, name: str) -> list[Prefix]:
        if isinstance(entries, str):
            return parse_lines(entries.splitlines(), f"sets.{name}")
        out = []
        for i, e in enumerate(entries):
            try:
                out.append(parse_prefix(str(e).strip()))
            except ValueError as ex:
                raise PolicyError([{"loc": ["entries", i], "msg": str(ex)}]) from None
        return out

    def _store_set(self, name: str, prefixes: list[Prefix], *, actor: str, what: str,
                   if_match: str | None = None,
                   edit: tuple[list[Prefix], list[Prefix], list[Prefix]] | None = None) -> int:
        """Make set `name` hold `prefixes`. `edit` (the set's current list, the prefixes
        added to it, those removed) says that `prefixes` is that list so edited, without
        repeats: the compile and the set file then cost the edit, not the set."""
        if not pol.re.match(pol.NAME_RE, name):
            raise PolicyError([{"loc": ["name"], "msg": f"{name!r} is not a valid set name"}])
        uniq = prefixes if edit is not None else list(dict.fromkeys(prefixes))
        with self.lock:
            new = self.policy.model_copy(deep=True)
            if len(uniq) <= INLINE_SET_MAX:
                new.sets[name] = [prefix_str(p) for p in uniq]
                path = None
            else:
                path = self.state.set_file(name)
                tmp = path.with_name(f".{name}.pending")
                atomic_write(tmp, self._set_text(name, uniq, edit))
                st = tmp.stat()  # what we wrote is already parsed: seed the cache with it
                tmp_key = ("file", str(tmp), st.st_mtime_ns, st.st_size)
                self._cache_file(tmp_key, uniq)
                new.sets[name] = SetFile(file=str(tmp))
            try:
                self._commit(new, actor=actor, what=what, if_match=if_match, persist=False,
                             hints={name: edit} if edit is not None else None)
            except BaseException:
                if path is not None:
                    tmp.unlink(missing_ok=True)
                raise
            if path is not None:
                tmp.replace(path)
                self.policy.sets[name] = SetFile(file=str(path))
                self._cache_file(("file", str(path), *tmp_key[2:]),
                                 self._resolved.pop(tmp_key, uniq))
            else:
                self.state.set_file(name).unlink(missing_ok=True)
            self._persist()
            return len(uniq)

    def _set_text(self, name: str, prefixes: list[Prefix],
                  edit: tuple[list[Prefix], list[Prefix], list[Prefix]] | None) -> str:
        """The set file's text: one prefix a line. After an edit of a set whose file is the
        one written here for its current list (a line per prefix, in order), that file's
        text is reused: appended to, or its removed lines left out."""
        if edit is None:
            return "".join(prefix_str(p) + "\n" for p in prefixes)
        cur, added, removed = edit
        path = self.state.set_file(name)
        text = None
        if self._kept_here(name):
            try:
                text = path.read_text()
            except OSError:
                pass
        last = text.rstrip("\n").rpartition("\n")[2] if text else ""
        if (text is None or text.count("\n") != len(cur) or not text.endswith("\n")
                or (cur and parse_prefix(last) != cur[-1])):
            return "".join(prefix_str(p) + "\n" for p in prefixes)
        if removed and len(removed) <= _CUT_MAX:  # cut out each line (a search in C)
            for p in removed:
                text = _without_line(text, prefix_str(p) + "\n")
                if text is None:
                    return "".join(prefix_str(p) + "\n" for p in prefixes)
        elif removed:
            gone = set(removed)
            text = "".join(ln for ln, p in zip(text.splitlines(keepends=True), cur)
                           if p not in gone)
        return text + "".join(prefix_str(p) + "\n" for p in added)

    def put_set(self, name: str, entries: list[str] | str, *, actor: str,
                if_match: str | None = None) -> int:
        return self._store_set(name, self._parse_entries(entries, name), actor=actor,
                               what=f"set.put {name}", if_match=if_match)

    def _kept_here(self, name: str) -> bool:
        """Is set `name` a file of the state dir (written by _store_set: no repeats)?"""
        d = self.policy.sets.get(name)
        return isinstance(d, SetFile) and Path(d.file) == self.state.set_file(name)

    def _members(self, name: str, cur: list[Prefix]) -> set[Prefix] | _InSet:
        """Something that says whether a prefix is in set `name` (now `cur`): the last
        compile's table when it holds the set, else a set made here."""
        last = self.applier.last if self.applier else None
        if last is not None and last.plan is not None and last.plan.sets.get(name) is cur:
            return _InSet(last.plan.own, name)
        return set(cur)

    def add_set_entries(self, name: str, entries: list[str] | str, *, actor: str) -> int:
        with self.lock:
            cur = self._prefixes(name)
            have = self._members(name, cur)
            add = [p for p in dict.fromkeys(self._parse_entries(entries, name)) if p not in have]
            # a set from elsewhere (inline, an operator's file) may repeat entries: let
            # _store_set drop the repeats, over the whole list
            return self._store_set(name, cur + add, actor=actor, what=f"set.add {name}",
                                   edit=(cur, add, []) if self._kept_here(name) else None)

    def remove_set_entries(self, name: str, entries: list[str] | str, *, actor: str) -> int:
        with self.lock:
            cur = self._prefixes(name)
            have = self._members(name, cur)
            gone = [p for p in dict.fromkeys(self._parse_entries(entries, name)) if p in have]
            drop = set(gone)
            return self._store_set(name, [p for p in cur if p not in drop], actor=actor,
                                   what=f"set.remove {name}",
                                   edit=(cur, [], gone) if self._kept_here(name) else None)

    def delete_set(self, name: str, *, actor: str) -> None:
        with self.lock:
            new = policy_without_set(self.policy, name)
            self._commit(new, actor=actor, what=f"set.delete {name}")
            self.state.set_file(name).unlink(missing_ok=True)

    # ---- interfaces ------------------------------------------------------------------
    def _attach(self, ifname: str, mode: str, force: bool = False) -> loader.Attached:
        assert self.filter is not None
        att = loader.attach(self.filter, ifname, mode, force=force, netns=self.cfg.netns)
        self.attached[ifname] = att
        return att

    def interfaces(self) -> list[dict[str, Any]]:
        return [{"name": a.ifname, "ifindex": a.ifindex, "mode": a.mode, "netns": a.netns}
                for a in self.attached.values()]

    def attach_interface(self, name: str, mode: str = "native", *, actor: str) -> dict[str, Any]:
        with self.lock:
            att = self._attach(name, mode, force=False)
            if self.filter is not None and self.filter.pin_dir is not None:
                self._drop_superseded_pins(self.filter.pin_dir)  # it may have replaced one
            self.state.audit(actor, "interface.attach", {"name": name, "mode": att.mode})
            return {"name": att.ifname, "ifindex": att.ifindex, "mode": att.mode,
                    "netns": att.netns}

    def detach_interface(self, name: str, *, actor: str) -> None:
        with self.lock:
            att = self.attached.get(name)
            if att is None:
                raise NotFound(f"xdpgate is not attached to {name!r}")
            loader.detach(att.ifname, att.netns)
            del self.attached[name]
            self.state.audit(actor, "interface.detach", {"name": name})

    # ---- observation -------------------------------------------------------------------
    def _rule_names(self) -> list[str]:
        return [r.name for r in self.policy.rules]

    def flows(self, *, app: str | None = None, category: str | None = None, ip: str | None = None,
              port: int | None = None, verdict: str | None = None, sort: str = "bytes",
              limit: int = 100) -> list[dict[str, Any]]:
        assert self.filter is not None
        return observe.flows(self.filter.maps, app=app, category=category, ip=ip, port=port,
                             verdict=verdict, sort=sort, limit=limit,
                             rule_names=self.applier.gen_names if self.applier else None)

    def stats(self) -> dict[str, Any]:
        assert self.filter is not None and self.applier is not None
        maps = self.filter.maps
        out = observe.counters(maps)
        # not under self.lock: a scrape must not wait seconds for a big policy load (the
        # hits are read under the applier's hits_lock; a rule of a policy being applied
        # shows its hits once that policy runs)
        hits = self.applier.rule_hits()
        names = self._rule_names()
        out["rules"] = [{"name": n, "packets": hits.get(n, (0, 0))[0],
                         "bytes": hits.get(n, (0, 0))[1]} for n in names]
        pk, by = self.applier.default_hits()
        out["default"] = {"packets": pk, "bytes": by}
        s = self.sampler
        out.update(observe.dims(maps, dict(s.sink.flows_by_app) if s else None,
                                dict(s.sink.flows_by_cat) if s else None))
        out["policy_load_errors"] = self.policy_load_errors
        out["policy_version"] = self.policy_version
        out["sampler"] = {"samples": s.samples if s else 0,
                          "errors": s.sink.errors if s else 0,
                          "lost": out["events"].get("sample_lost", 0),
                          **(s.latency_percentiles() if s else {})}
        return out

    def classes(self) -> dict[str, Any]:
        from .classify import taxonomy

        return {"categories": list(taxonomy.CATEGORIES), "apps": list(taxonomy.APPS),
                "calls": list(taxonomy.CALL_KINDS)}

    def status(self) -> dict[str, Any]:
        return {"version": self.version, "uptime_s": round(time.time() - self.started, 1),
                "policy_version": self.policy_version, "etag": self.etag,
                "instance": self.cfg.instance, "fail_mode": self.cfg.fail_mode,
                "adopted": bool(self.filter and self.filter.adopted),
                "interfaces": self.interfaces()}

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        self.state.audit(actor, action, detail)

    def startup_line(self) -> str:
        parts = [f"{a.ifname} ({a.mode}{', netns ' + a.netns if a.netns else ''})"
                 for a in self.attached.values()]
        adopted = " (adopted the running filter's maps)" if self.filter and self.filter.adopted else ""
        return (f"xdpgate {self.version}: filtering on {', '.join(parts) or 'no interface'}; "
                f"policy v{self.policy_version} with {len(self.policy.rules)} rules, "
                f"default {self.policy.default}; fail mode {self.cfg.fail_mode}{adopted}")


