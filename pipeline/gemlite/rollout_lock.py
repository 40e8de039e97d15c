"""The rollout lock shared with the server (src/models/rollout-lock.ts; protocol in docs/CONTRACTS.md).

Every writer of `<repo>/rollout.json` holds `<repo>/.rollout.lock` around its read-modify-write, so that
an edit made meanwhile by a server process (admin API, automatic canary rollback) is merged into rather
than overwritten. The lock holds its owner as JSON (pid, host, bootId, pidNamespace, token, acquiredAt),
written whole to a private temp file and hard-linked into place, so it never exists empty. It is stale
when its owner is a process that no longer runs in this kernel boot and PID namespace, or when it is
older than STALE_S; stale locks are removed by one waiter at a time, under `<repo>/.rollout.lock.break`.
Standard library only: the server's tests run it.
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
BREAK_STALE_S = 10.0
POLL_S = 0.01


class RolloutLocked(RuntimeError):
    """Another writer held the lock for longer than the wait."""


def _read_or_none(read: Callable[[], str]) -> str | None:
    try:
        return read().strip()
    except OSError:
        return None


# Where a pid of this process means the same process: same boot, same PID namespace.
_HERE = {
    "host": socket.gethostname(),
    "bootId": _read_or_none(lambda: Path("/proc/sys/kernel/random/boot_id").read_text()),
    "pidNamespace": _read_or_none(lambda: os.readlink("/proc/self/ns/pid")),
}


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
        owner = {"pid": os.getpid(), **_HERE, "token": token,
                 "acquiredAt": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}
        if _try_create(path, owner):
            return token
        held = _inspect(path)
        if held is None:
            continue  # released between our attempt and the look
        holder, age_s = held
        stale = _is_stale(holder, age_s, stale_s)
        if stale:
            removed = _break_stale(path, stale_s)
            if removed is not None:
                if on_stale is not None:
                    on_stale(*removed)
                continue
            # Nothing removed: another waiter is breaking it, or one that died holds the break file until
            # it is BREAK_STALE_S old. Retrying at once would spin a core past the timeout until then.
        if time.monotonic() >= give_up_at:
            who = f"pid {holder['pid']} on {holder['host']}" if holder else "an unreadable owner"
            why = (f"; it is stale, but {path.name}.break (another waiter breaking it, or one that died) keeps it "
                   f"until that is {BREAK_STALE_S:g} s old") if stale else ""
            raise RolloutLocked(f"{path} is held by {who}, {age_s * 1000:.0f} ms old{why}; gave up after {timeout_s:g} s")
        time.sleep(POLL_S + random.random() * POLL_S)


def _try_create(path: Path, owner: dict) -> bool:
    """Write the owner to a private file, then link it into place: the lock appears whole or not at all."""
    temp = path.with_name(f"{path.name}.{owner['token']}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(owner) + "\n")
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    finally:
        try:
            temp.unlink()
        except FileNotFoundError:
            pass


def _inspect(path: Path) -> tuple[dict | None, float] | None:
    try:
        raw = path.read_text()
        age_s = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    return _parse_owner(raw), age_s


def _parse_owner(raw: str) -> dict | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # not this protocol's file (an older writer's, or damaged): only its age counts
    ok = isinstance(value, dict) and isinstance(value.get("pid"), int) and isinstance(value.get("host"), str) \
        and isinstance(value.get("token"), str)
    return value if ok else None


def _is_stale(holder: dict | None, age_s: float, stale_s: float) -> bool:
    if age_s > stale_s:
        return True
    if holder is None or holder["pid"] == os.getpid():
        return False
    same_space = holder["host"] == _HERE["host"] and _HERE["bootId"] is not None \
        and holder.get("bootId") == _HERE["bootId"] and _HERE["pidNamespace"] is not None \
        and holder.get("pidNamespace") == _HERE["pidNamespace"]
    return same_space and not _process_runs(holder["pid"])


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _break_stale(path: Path, stale_s: float) -> tuple[dict | None, float] | None:
    """Remove a stale lock, one breaker at a time, re-judging under the break lock what is there now."""
    break_path = path.with_name(f"{path.name}.break")
    try:
        os.close(os.open(break_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        try:  # a breaker that died holding it would block every recovery
            if time.time() - break_path.stat().st_mtime > BREAK_STALE_S:
                break_path.unlink()
        except FileNotFoundError:
            pass
        return None
    try:
        held = _inspect(path)
        if held is None or not _is_stale(*held, stale_s):
            return None
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return held
    finally:
        try:
            break_path.unlink()
        except FileNotFoundError:
            pass


def _release(path: Path, token: str) -> None:
    """Unlink the lock if it is still ours; a holder slower than STALE_S may have lost it."""
    try:
        holder = _parse_owner(path.read_text())
        if holder is not None and holder["token"] == token:
            path.unlink()
    except FileNotFoundError:
        pass
