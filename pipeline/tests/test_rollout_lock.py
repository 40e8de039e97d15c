"""The publisher's side of the rollout lock (docs/CONTRACTS.md): route_published edits rollout.json only
while holding it, stale locks are removed, live ones are waited for and then refused."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from pipeline.gemlite.publish import route_published
from pipeline.gemlite.rollout_lock import LOCK_FILE, RolloutLocked, rollout_lock


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def _write_lock(repo, owner) -> None:
    (repo / LOCK_FILE).write_text(owner if isinstance(owner, str) else json.dumps(owner))


def _here_space() -> dict:
    return {"host": socket.gethostname(), "bootId": open("/proc/sys/kernel/random/boot_id").read().strip(),
            "pidNamespace": os.readlink("/proc/self/ns/pid")}


def _rollout(stable: int) -> dict:
    return {"salt": "s", "routes": {"feed": {"ctr": "feed-ctr", "cvr": "feed-cvr"}},
            "models": {"feed-ctr": {"stable": stable}, "feed-cvr": {"stable": 1}}}


def test_route_published_waits_for_a_held_lock_and_keeps_the_holders_edit(tmp_path):
    (tmp_path / "rollout.json").write_text(json.dumps(_rollout(1)))
    released = threading.Event()

    def server_edit():
        # What a server process does meanwhile: read, hold, write its own edit, release.
        with rollout_lock(tmp_path):
            ready.set()
            flags = json.loads((tmp_path / "rollout.json").read_text())
            time.sleep(0.3)
            flags["models"]["feed-cvr"]["shadow"] = [1]
            (tmp_path / "rollout.json").write_text(json.dumps(flags))
        released.set()

    ready = threading.Event()
    editor = threading.Thread(target=server_edit)
    editor.start()
    ready.wait(5)
    route_published(tmp_path, {"feed-ctr": 2}, "stable")
    editor.join()
    assert released.is_set()
    flags = json.loads((tmp_path / "rollout.json").read_text())
    assert flags["models"]["feed-ctr"] == {"stable": 2}
    assert flags["models"]["feed-cvr"] == {"stable": 1, "shadow": [1]}, "the server's edit is kept"
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_of_an_exited_process_of_this_host_is_removed(tmp_path):
    pid = _dead_pid()
    _write_lock(tmp_path, {"pid": pid, **_here_space(), "token": "dead", "acquiredAt": ""})
    seen = []
    with rollout_lock(tmp_path, timeout_s=2, on_stale=lambda owner, age: seen.append(owner)):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert [o["pid"] for o in seen] == [pid]
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_live_lock_is_refused_after_the_wait_and_left_alone(tmp_path):
    owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "server", "acquiredAt": ""})
    _write_lock(tmp_path, owner)
    with pytest.raises(RolloutLocked, match=r"held by pid \d+ on .*gave up after 0.1 s"):
        with rollout_lock(tmp_path, timeout_s=0.1):
            pass
    assert (tmp_path / LOCK_FILE).read_text() == owner


def test_an_unreadable_lock_counts_only_by_age(tmp_path):
    _write_lock(tmp_path, "")
    with pytest.raises(RolloutLocked, match="unreadable owner"):
        with rollout_lock(tmp_path, timeout_s=0.1):
            pass
    old = time.time() - 60
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with rollout_lock(tmp_path, timeout_s=0.1):
        pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    successor = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "successor", "acquiredAt": ""})
    with rollout_lock(tmp_path):
        _write_lock(tmp_path, successor)
    assert (tmp_path / LOCK_FILE).read_text() == successor


def test_route_published_keep_writes_nothing_and_releases(tmp_path):
    (tmp_path / "rollout.json").write_text(json.dumps(_rollout(1)))
    before = (tmp_path / "rollout.json").read_text()
    assert route_published(tmp_path, {"feed-ctr": 2}, "keep") is None
    assert (tmp_path / "rollout.json").read_text() == before
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("elsewhere", [{"pidNamespace": "pid:[1]"}, {"bootId": "another-boot"}, {"bootId": None}])
def test_a_dead_pid_of_another_pid_namespace_or_boot_is_not_judged_dead(tmp_path, elsewhere):
    _write_lock(tmp_path, {"pid": _dead_pid(), **_here_space(), **elsewhere, "token": "sidecar", "acquiredAt": ""})
    with pytest.raises(RolloutLocked):
        with rollout_lock(tmp_path, timeout_s=0.05):
            pass


def test_a_failed_owner_write_leaves_no_lock(tmp_path, monkeypatch):
    import pipeline.gemlite.rollout_lock as lock_module

    def full_disk(fd, mode):
        os.close(fd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lock_module.os, "fdopen", full_disk)
    with pytest.raises(OSError, match="No space"):
        with rollout_lock(tmp_path, timeout_s=0.1):
            pass
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    with rollout_lock(tmp_path, timeout_s=0.1):
        pass


def test_racers_over_one_stale_lock_get_in_one_at_a_time(tmp_path):
    for trial in range(5):
        repo = tmp_path / str(trial)
        repo.mkdir()
        _write_lock(repo, "")
        old = time.time() - 60
        os.utime(repo / LOCK_FILE, (old, old))
        inside, most, entered = [0], [0], []
        guard = threading.Lock()
        start = threading.Barrier(6)

        def racer():
            start.wait()
            with rollout_lock(repo, timeout_s=5):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    entered.append(1)
                time.sleep(0.01)
                with guard:
                    inside[0] -= 1

        threads = [threading.Thread(target=racer) for _ in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert most[0] == 1 and len(entered) == 6, f"trial {trial}"
        assert [p.name for p in repo.iterdir() if p.name.startswith(LOCK_FILE)] == []


def test_a_stale_lock_behind_a_break_file_is_waited_for_without_spinning(tmp_path, monkeypatch):
    """A breaker that died leaves `.rollout.lock.break`: nobody may break the stale lock until that file is
    BREAK_STALE_S old. The wait used to loop without sleeping or looking at its timeout until then."""
    import pipeline.gemlite.rollout_lock as lock_module

    monkeypatch.setattr(lock_module, "BREAK_STALE_S", 2.0)
    _write_lock(tmp_path, {"pid": _dead_pid(), **_here_space(), "token": "dead", "acquiredAt": ""})
    (tmp_path / (LOCK_FILE + ".break")).write_text("")
    t0, cpu0 = time.monotonic(), time.process_time()
    with pytest.raises(RolloutLocked, match=r"stale.*\.rollout\.lock\.break.*gave up after 0.3 s"):
        with rollout_lock(tmp_path, timeout_s=0.3):
            pass
    assert time.monotonic() - t0 < 1.5
    assert time.process_time() - cpu0 < 0.15, "the wait spun instead of sleeping"
    # a wait longer than the break file's staleness gets in once it has aged out, still sleeping meanwhile
    cpu0 = time.process_time()
    with rollout_lock(tmp_path, timeout_s=5):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert time.process_time() - cpu0 < 0.3
    assert not (tmp_path / LOCK_FILE).exists() and not (tmp_path / (LOCK_FILE + ".break")).exists()
