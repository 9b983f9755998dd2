"""The X user tokens that ``nijifeed login`` obtains, kept in ``DATA_DIR/x_tokens.json`` (mode 0600).

One JSON object, ``kind`` ``oauth2`` (``client_id``, optional ``client_secret``, ``access_token``,
``refresh_token``, ``expires_at`` and ``lifetime`` in Unix seconds, ``scope``, and ``seed_sha256`` when it came
from ``NIJIFEED_X_REFRESH_TOKEN``) or ``oauth1`` (``consumer_key``, ``consumer_secret``, ``access_token``,
``access_token_secret``). Never logged: the X client registers every value with its log redactor.

**Writes** go through a temp file in the same folder (mode 0600 from creation), fsync, rename, then an fsync of
the folder, so the file is either the old tokens or the new ones, whole, and the new ones survive a power cut once
``save`` returns. Every read-modify-write (a refresh) holds ``x_tokens.lock`` (``flock``) and a thread lock, so
the daemon, a ``poll`` command and the forwarders in one process or several never spend the same refresh token
twice: the one that waits reads the tokens the other saved.

**What a crash can and cannot lose.** X rotates refresh tokens: the answer to a refresh carries a new refresh
token and the old one stops working at once. The new one is saved (``save`` returned) before the new access token
is used for anything, so a crash at any later point finds it on disk. A crash in the window between the token
endpoint's answer and the rename (milliseconds) leaves the old, now spent, token on disk: no code on this side can
close that window, since the token exists only in that answer (an answer lost on its way, a timeout after X
rotated, is the same case). The next start then fails with one line saying to
run ``nijifeed login`` again (the file is never half-written). A save that fails (disk full, read-only) keeps the
new tokens in memory, unused, and retries the save before anything else.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.files import write_atomic
from service.sources import SourceError

MODE = 0o600
_THREAD_LOCKS: dict[Path, threading.RLock] = {}
_GUARD = threading.Lock()


def seed_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """``DATA_DIR/x_tokens.json``: load, save (atomic, 0600, durable), and a lock for refreshes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name.removesuffix(".json") + ".lock")

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def load(self) -> dict[str, Any] | None:
        """The stored tokens, or None when there are none. A file that is not what ``save`` writes: fatal
        ``SourceError`` naming the file (and the fix)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(f"cannot read the X tokens in {self.path}: {exc.strerror or exc}", fatal=True) from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("kind") not in ("oauth1", "oauth2"):
            raise SourceError(f"{self.path} is not a token file nijifeed wrote: remove it and run `nijifeed login`",
                              fatal=True)
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Replace the stored tokens (see the module docstring: whole, mode 0600, on disk when this returns)."""
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode() + b"\n")  # mkstemp: 0600
        os.chmod(self.path, MODE)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself is durable
        finally:
            os.close(fd)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Held around a refresh: one refresher at a time, across threads and processes."""
        with _GUARD:
            thread_lock = _THREAD_LOCKS.setdefault(self.path.resolve(), threading.RLock())
        with thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock


def oauth2_record(answer: dict[str, Any], *, client_id: str, client_secret: str | None, now: float,
                  seed_sha256: str | None = None, previous_scope: str | None = None) -> dict[str, Any]:
    """The stored form of a token endpoint's answer. Raises ``SourceError`` when the answer lacks a token."""
    access = answer.get("access_token")
    refresh = answer.get("refresh_token")
    if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
        raise SourceError("the X token endpoint answered without an access token and a refresh token (is "
                          "offline.access among the app's scopes?)", fatal=True)
    try:
        lifetime = float(answer.get("expires_in", 7200))
    except (TypeError, ValueError):
        lifetime = 7200.0
    lifetime = max(1.0, min(lifetime, 30 * 86_400.0))
    record: dict[str, Any] = {
        "kind": "oauth2", "client_id": client_id, "access_token": access, "refresh_token": refresh,
        "expires_at": now + lifetime, "lifetime": lifetime,
        "scope": str(answer.get("scope") or previous_scope or ""),
    }
    if client_secret:
        record["client_secret"] = client_secret
    if seed_sha256:
        record["seed_sha256"] = seed_sha256
    return record


__all__ = ["MODE", "TokenFile", "oauth2_record", "seed_hash"]
