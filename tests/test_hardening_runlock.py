"""The run lock (issue 14): a second run into a locked folder exits 2 naming the holder's PID; a stale lock (kill -9,
PID reuse, another host's expired heartbeat) is taken over with a warning; the lock goes when the run ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from f2b_study.errors import InputError
from f2b_study.runlock import FOREIGN_STALE_AFTER_S, LOCK_NAME, run_lock

REPO = Path(__file__).resolve().parent.parent

# a run: takes the lock, says so, holds it until a release file appears; an InputError exits 2 as the CLI does
HOLDER = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    from f2b_study.errors import InputError
    from f2b_study.runlock import run_lock
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    folder, release = Path(sys.argv[1]), Path(sys.argv[2])
    go = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    while go is not None and not go.exists():
        time.sleep(0.005)
    try:
        with run_lock(folder, "train"):
            print("LOCKED", flush=True)
            deadline = time.time() + 60
            while not release.exists() and time.time() < deadline:
                time.sleep(0.02)
    except InputError as error:
        print(f"f2b-study train: error: {error}", file=sys.stderr)
        sys.exit(InputError.exit_code)
""")


def _start(folder: Path, release: Path, *extra: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(release), *map(str, extra)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_locked(process: subprocess.Popen) -> None:
    line = process.stdout.readline()
    assert line.strip() == "LOCKED", process.stderr.read()


def test_a_second_run_exits_2_naming_the_holder(tmp_path: Path) -> None:
    out, release = tmp_path / "out", tmp_path / "release"
    first = _start(out, release)
    try:
        _wait_locked(first)
        holder = json.loads((out / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid and holder["command"] == "train"
        assert holder["host"] == socket.gethostname()
        second = _start(out, tmp_path / "never")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert f"PID {first.pid}" in err and "another f2b-study run" in err and err.count("\n") == 1
    finally:
        release.touch()
        first.wait(timeout=60)
    assert first.returncode == 0
    assert not (out / LOCK_NAME).exists()  # released on exit


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_a_lock_left_by_kill_9_is_taken_over_with_a_warning(tmp_path: Path, reap: bool) -> None:
    out, release = tmp_path / "out", tmp_path / "release"
    first = _start(out, release)
    _wait_locked(first)
    os.kill(first.pid, signal.SIGKILL)
    if reap:
        first.wait(timeout=30)
    else:  # the killed holder stays a zombie until its parent reaps it: still not a live holder
        deadline = time.time() + 30
        while Path(f"/proc/{first.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.time() < deadline
            time.sleep(0.01)
    assert (out / LOCK_NAME).exists()
    second = _start(out, release)
    try:
        _wait_locked(second)
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == second.pid
    finally:
        release.touch()
        _, err = second.communicate(timeout=60)
        first.wait(timeout=30)
    assert second.returncode == 0
    assert "taking over the lock" in err and f"PID {first.pid}" in err
    assert not (out / LOCK_NAME).exists()


def test_only_one_of_many_racing_runs_takes_over_a_stale_lock(tmp_path: Path) -> None:
    out, release, go = tmp_path / "out", tmp_path / "release", tmp_path / "go"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "screen",
                                             "started": "2020-01-01T00:00:00+00:00", "token": "old"}))
    runs = [_start(out, release, go) for _ in range(4)]
    time.sleep(1.0)  # every interpreter is up and waiting for `go`
    go.touch()
    try:
        winner = None
        deadline = time.time() + 60
        while winner is None and time.time() < deadline:
            holder = json.loads((out / LOCK_NAME).read_text()) if (out / LOCK_NAME).exists() else {}
            if holder.get("token") != "old" and holder.get("pid"):
                winner = holder["pid"]
            time.sleep(0.01)
        losers = [run for run in runs if run.pid != winner]
        for run in losers:
            run.wait(timeout=60)
        assert [run.returncode for run in losers] == [2, 2, 2]
        for run in losers:
            assert f"PID {winner}" in run.stderr.read()
    finally:
        release.touch()
        for run in runs:
            run.wait(timeout=60)
    assert [run.returncode for run in runs].count(0) == 1


def test_a_recycled_pid_is_not_the_holder(tmp_path: Path, caplog) -> None:
    # PID 1 is alive, but started long before this "holder" did: the lock's process is gone
    (tmp_path / LOCK_NAME).write_text(json.dumps({
        "pid": 1, "host": socket.gethostname(), "process_start": 10**12, "command": "train",
        "started": "2020-01-01T00:00:00+00:00", "token": "old"}))
    with run_lock(tmp_path, "screen"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "another process" in caplog.text


def test_another_hosts_lock_is_refused_until_its_heartbeat_is_old(tmp_path: Path, caplog) -> None:
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": 4242, "host": "gpu-node-7", "command": "train",
                                "started": "2020-01-01T00:00:00+00:00", "token": "theirs"}))
    with (pytest.raises(InputError, match=r"PID 4242 on host gpu-node-7.*cannot see processes on host"),
          run_lock(tmp_path, "screen")):
        pass
    assert json.loads(lock.read_text())["token"] == "theirs"
    old = time.time() - FOREIGN_STALE_AFTER_S - 60
    os.utime(lock, (old, old))
    with run_lock(tmp_path, "screen"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "gpu-node-7" in caplog.text and "taking over" in caplog.text


def test_released_on_an_exception_and_nested_in_one_process(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), run_lock(tmp_path, "train"):
        with run_lock(tmp_path, "train"):  # nested: shares the lock, does not release it
            pass
        assert (tmp_path / LOCK_NAME).exists()
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_half_written_lock_is_waited_for_then_taken_over(tmp_path: Path, caplog) -> None:
    lock = tmp_path / LOCK_NAME
    lock.write_text("")  # as a creator leaves it between O_EXCL and its write; after the grace it is stale
    with run_lock(tmp_path, "train"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "empty or unreadable" in caplog.text


def test_an_output_path_that_is_a_file_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(InputError, match="this is a file"), run_lock(tmp_path / "out", "train"):
        pass
