"""The controller's state directory: the running policy, API-managed sets and the
audit log, written atomically (write to a temporary file, fsync, rename)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    b = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sets_dir.mkdir(exist_ok=True, mode=0o700)

    @property
    def policy_file(self) -> Path:
        return self.root / "policy.yaml"

    @property
    def meta_file(self) -> Path:
        return self.root / "state.json"

    @property
    def sets_dir(self) -> Path:
        return self.root / "sets"

    @property
    def audit_file(self) -> Path:
        return self.root / "audit.log"

    def set_file(self, name: str) -> Path:
        return self.sets_dir / f"{name}.txt"

    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_file.read_text())
        except (OSError, ValueError):
            return {}

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write(self.meta_file, json.dumps(meta, indent=1, sort_keys=True))

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "actor": actor,
                           "action": action, "detail": detail}, sort_keys=True)
        fd = os.open(self.audit_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line + "\n")
