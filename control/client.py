"""A small REST client for xdpgate's API (used by the CLI, the benches and the tests).

Every failure is a ClientError whose message is the server's own error text (or what
went wrong reaching it), never a traceback.
"""

from __future__ import annotations

import errno
import os
from urllib.parse import quote
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx

DEFAULT_STATE_DIR = Path("/var/lib/xdpgate")
DEFAULT_URL = "http://127.0.0.1:8080"
CHUNK = 1 << 20


class ClientError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def default_url() -> str:
    return os.environ.get("XDPGATE_URL", DEFAULT_URL)


def default_state_dir() -> Path:
    return Path(os.environ.get("XDPGATE_STATE_DIR", DEFAULT_STATE_DIR))


def read_token(state_dir: str | os.PathLike[str] | None = None,
               token_file: str | os.PathLike[str] | None = None) -> str:
    """XDPGATE_TOKEN, the given file, or STATE_DIR/tokens/admin (falling back to readonly)."""
    if token_file is None and os.environ.get("XDPGATE_TOKEN"):
        return os.environ["XDPGATE_TOKEN"].strip()
    d = Path(state_dir) if state_dir is not None else default_state_dir()
    candidates = [Path(token_file)] if token_file else [d / "tokens" / "admin",
                                                         d / "tokens" / "readonly"]
    why, missing = [], 0
    for p in candidates:
        try:
            tok = p.read_text().strip()
        except OSError as e:
            why.append(f"{p}: {e.strerror}")
            missing += e.errno == errno.ENOENT
            continue
        if tok:
            return tok
        why.append(f"{p}: empty")
    hints = []
    if missing == len(candidates) and not token_file:
        hints.append("`xdpgate run` (or `xdpgate demo`) makes the tokens when it starts: "
                     "is it running with this state dir?")
    if os.geteuid() != 0:
        hints.append("the tokens are readable by root only: run as root")
    hints.append("or pass --token-file / --state-dir, or set XDPGATE_TOKEN")
    raise ClientError("no API token (" + "; ".join(why) + "); " + "; ".join(hints))


def error_text(detail: Any) -> str:
    """The server's `detail` as one readable line per problem."""
    if isinstance(detail, list):
        out = []
        for d in detail:
            if isinstance(d, dict):
                loc = ".".join(str(x) for x in d.get("loc", []) if x != "body")
                line = f" (line {d['line']})" if d.get("line") else ""
                out.append(f"{loc}: {d.get('msg', '')}{line}" if loc else
                           f"{d.get('msg', '')}{line}")
            else:
                out.append(str(d))
        return "; ".join(out)
    return str(detail)


def _q(name: str) -> str:
    return quote(name, safe="")


def _file_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


class Client:
    """`Client(url, token)`: one method per endpoint, returning parsed JSON."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 verify: bool | str = True, timeout: float = 120.0) -> None:
        self.url = (url or default_url()).rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, verify=verify,
                                 timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ClientError(f"can't reach xdpgate at {self.url}: {e or type(e).__name__} "
                              "(is `xdpgate run` serving the API there? see --url)") from None
        if r.status_code >= 400:
            try:
                msg = error_text(r.json().get("detail", r.text))
            except ValueError:
                msg = r.text.strip() or r.reason_phrase
            raise ClientError(f"{msg} (HTTP {r.status_code})", r.status_code)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self.request(method, path, **kw)
        return r.json() if r.content else None

    @staticmethod
    def _place(position: int | None, before: str | None, after: str | None) -> dict[str, Any]:
        return {k: v for k, v in (("position", position), ("before", before), ("after", after))
                if v is not None}

    @staticmethod
    def _if_match(etag: str | None) -> dict[str, str]:
        return {"If-Match": etag} if etag else {}

    # ---- status
    def healthz(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/status")

    def interfaces(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/v1/interfaces")

    def attach(self, name: str, mode: str = "native") -> dict[str, Any]:
        return self._json("POST", "/api/v1/interfaces", json={"name": name, "mode": mode})

    def detach(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/interfaces/{_q(name)}")

    # ---- policy
    def get_policy(self) -> tuple[dict[str, Any], str]:
        r = self.request("GET", "/api/v1/policy")
        return r.json(), r.headers.get("etag", "")

    def put_policy(self, policy: dict[str, Any], if_match: str | None = None) -> str:
        return self._json("PUT", "/api/v1/policy", json=policy,
                          headers=self._if_match(if_match))["etag"]

    def validate_policy(self, policy: dict[str, Any]) -> list[str]:
        return self._json("POST", "/api/v1/policy/validate", json=policy)["warnings"]

    # ---- rules
    def rules(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/v1/rules")

    def get_rule(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/rules/{_q(name)}")

    def add_rule(self, rule: dict[str, Any], *, position: int | None = None,
                 before: str | None = None, after: str | None = None,
                 if_match: str | None = None) -> dict[str, Any]:
        return self._json("POST", "/api/v1/rules", json=rule,
                          params=self._place(position, before, after),
                          headers=self._if_match(if_match))

    def put_rule(self, name: str, rule: dict[str, Any], *, position: int | None = None,
                 before: str | None = None, after: str | None = None,
                 if_match: str | None = None) -> dict[str, Any]:
        return self._json("PUT", f"/api/v1/rules/{_q(name)}", json=rule,
                          params=self._place(position, before, after),
                          headers=self._if_match(if_match))

    def delete_rule(self, name: str, if_match: str | None = None) -> str:
        return self._json("DELETE", f"/api/v1/rules/{_q(name)}",
                          headers=self._if_match(if_match))["etag"]

    # ---- sets
    def sets(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/v1/sets")

    def get_set(self, name: str) -> list[str]:
        return self._json("GET", f"/api/v1/sets/{_q(name)}")["entries"]

    def _entries(self, method: str, path: str,
                 entries: Iterable[str] | str | bytes | IO[bytes]) -> dict[str, Any]:
        """Lists go as JSON; text, bytes and open files as text/plain (files streamed)."""
        hdr = {"Content-Type": "text/plain; charset=utf-8"}
        if isinstance(entries, str):
            return self._json(method, path, content=entries.encode(), headers=hdr)
        if isinstance(entries, bytes):
            return self._json(method, path, content=entries, headers=hdr)
        if hasattr(entries, "read"):
            return self._json(method, path, content=_file_chunks(entries),  # type: ignore[arg-type]
                              headers=hdr)
        return self._json(method, path, json={"entries": list(entries)})

    def put_set(self, name: str, entries: Iterable[str] | str | bytes | IO[bytes]) -> int:
        return self._entries("PUT", f"/api/v1/sets/{_q(name)}", entries)["count"]

    def load_set_file(self, name: str, path: str | os.PathLike[str]) -> int:
        """Upload a file of one CIDR a line (streamed, any size up to the server's limit)."""
        try:
            f = open(path, "rb")
        except OSError as e:
            raise ClientError(f"can't read {path}: {e.strerror}") from None
        with f:
            return self.put_set(name, f)

    def add_set_entries(self, name: str, entries: Iterable[str] | str | bytes | IO[bytes]) -> int:
        return self._entries("POST", f"/api/v1/sets/{_q(name)}/entries", entries)["count"]

    def remove_set_entries(self, name: str,
                           entries: Iterable[str] | str | bytes | IO[bytes]) -> int:
        return self._entries("DELETE", f"/api/v1/sets/{_q(name)}/entries", entries)["count"]

    def delete_set(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/sets/{_q(name)}")

    # ---- observation
    def flows(self, **filters: Any) -> list[dict[str, Any]]:
        return self._json("GET", "/api/v1/flows",
                          params={k: v for k, v in filters.items() if v is not None})

    def stats(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/stats")

    def classes(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/classes")

    def metrics(self) -> str:
        return self.request("GET", "/metrics").text
