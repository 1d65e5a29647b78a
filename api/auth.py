"""Bearer tokens: an admin token (reads and writes) and a read-only one, kept in the state dir.

`ensure_tokens(state_dir)` creates STATE_DIR/tokens/{admin,readonly} at first start (the token
alone in each file, mode 0600, directory 0700) and re-reads them afterwards.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("admin", "readonly")


@dataclass(frozen=True)
class Tokens:
    admin: str
    readonly: str

    def actor(self, presented: str) -> str | None:
        """The role whose token was presented, or None; constant-time in the token."""
        got = presented.encode()
        is_admin = hmac.compare_digest(got, self.admin.encode())
        is_ro = hmac.compare_digest(got, self.readonly.encode())
        return "admin" if is_admin else "readonly" if is_ro else None


def token_path(state_dir: str | os.PathLike[str], role: str) -> Path:
    return Path(state_dir) / "tokens" / role


def _read_or_create(path: Path) -> str:
    try:
        token = path.read_text().strip()
        if token:
            os.chmod(path, 0o600)
            return token
        path.unlink()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def ensure_tokens(state_dir: str | os.PathLike[str]) -> Tokens:
    """Read STATE_DIR/tokens/{admin,readonly}, creating whichever is missing or empty."""
    d = Path(state_dir) / "tokens"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    admin, readonly = (_read_or_create(d / role) for role in ROLES)
    return Tokens(admin=admin, readonly=readonly)
