"""The rollout lock shared with the server (src/models/rollout-lock.ts; protocol in docs/CONTRACTS.md).

Every writer of `<repo>/rollout.json` holds `<repo>/.rollout.lock` around its read-modify-write, so that
an edit made meanwhile by a server process (admin API, automatic canary rollback) is merged into rather
than overwritten. The lock file is created with O_EXCL and holds its owner as JSON (pid, host, token,
acquiredAt). It is stale, and removed by the next writer, when its owner is a process of this host that
no longer runs, or when it is older than STALE_S. Standard library only: the server's tests run it.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

LOCK_FILE = ".rollout.lock"
STALE_S = 30.0  # kRolloutLockStaleMs on the server side
POLL_S = 0.01


class RolloutLocked(RuntimeError):
    """Another writer held the lock for longer than the wait."""


@contextmanager
def rollout_lock(repo: Path, timeout_s: float = 10.0, stale_s: float = STALE_S,
                 on_stale: Callable[[dict | None, float], None] | None = None) -> Iterator[None]:
    path = Path(repo) / LOCK_FILE
    token = _acquire(path, timeout_s, stale_s, on_stale)
    try:
        yield
    finally:
        _release(path, token)


def _acquire(path: Path, timeout_s: float, stale_s: float, on_stale) -> str:
    token = secrets.token_hex(8)
    give_up_at = time.monotonic() + timeout_s
    while True:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                 "acquiredAt": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}
        if _try_create(path, owner):
            return token
        held = _inspect(path)
        if held is None:
            continue  # released between our attempt and the look
        raw, holder, age_s = held
        if _is_stale(holder, age_s, stale_s):
            if _remove_if_unchanged(path, raw) and on_stale is not None:
                on_stale(holder, age_s)
            continue
        if time.monotonic() >= give_up_at:
            who = f"pid {holder['pid']} on {holder['host']}" if holder else "an unreadable owner"
            raise RolloutLocked(f"{path} is held by {who}, {age_s * 1000:.0f} ms old; gave up after {timeout_s:g} s")
        time.sleep(POLL_S + random.random() * POLL_S)


def _try_create(path: Path, owner: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(owner) + "\n")
    return True


def _inspect(path: Path) -> tuple[str, dict | None, float] | None:
    try:
        raw = path.read_text()
        age_s = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    return raw, _parse_owner(raw), age_s


def _parse_owner(raw: str) -> dict | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # empty or cut short: its writer is still writing it, or crashed doing so
    ok = isinstance(value, dict) and isinstance(value.get("pid"), int) and isinstance(value.get("host"), str) \
        and isinstance(value.get("token"), str)
    return value if ok else None


def _is_stale(holder: dict | None, age_s: float, stale_s: float) -> bool:
    if age_s > stale_s:
        return True
    return holder is not None and holder["host"] == socket.gethostname() and holder["pid"] != os.getpid() \
        and not _process_runs(holder["pid"])


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _remove_if_unchanged(path: Path, raw: str) -> bool:
    """Remove a stale lock only if it is still the one judged stale (another writer may have replaced it)."""
    try:
        if path.read_text() != raw:
            return False
        path.unlink()
    except FileNotFoundError:
        return False  # another writer removed it first
    return True


def _release(path: Path, token: str) -> None:
    """Unlink the lock if it is still ours; a holder slower than STALE_S may have lost it."""
    try:
        holder = _parse_owner(path.read_text())
        if holder is not None and holder["token"] == token:
            path.unlink()
    except FileNotFoundError:
        pass
