"""No orphans (issue 14): killing a multi-process command (SIGKILL, or SIGTERM as `timeout`, Slurm and Kubernetes
send it) leaves no worker, no resource tracker, nothing of it running; SIGTERM is a clean interrupt (exit 130)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_PHOTOS = REPO / "cohorts" / "demo" / "photos"


def _session(sid: int) -> list[tuple[int, str]]:
    """Live processes (not zombies) of session ``sid``: the command started with start_new_session and every
    descendant that did not leave its session (a reparented orphan keeps it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append((int(entry), command[:100]))
    return found


def _wait_gone(sid: int, seconds: float) -> list[tuple[int, str]]:
    deadline = time.time() + seconds
    left = _session(sid)
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = _session(sid)
    return left


def _kill_session(sid: int) -> None:
    for pid, _ in _session(sid):  # only what this test started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def photos(module_tmp) -> Path:
    folder = module_tmp("many") / "photos"
    folder.mkdir()
    for path in sorted(DEMO_PHOTOS.glob("*.jpg"))[:72]:  # > 64: the pool is used
        shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_preprocess_leaves_nothing_running(photos: Path, tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "f2b_study", "preprocess", "--photos", str(photos), "--workers", "2", "--out", str(out),
         "--cache", str(out / "cache")],
        cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # mid-run: both workers up and some faces already in the cache
        deadline = time.time() + 180
        while time.time() < deadline:
            workers = [p for p, command in _session(process.pid) if "spawn_main" in command]
            cached = list((out / "cache").rglob("*.npz")) if (out / "cache").exists() else []
            if len(workers) == 2 and len(cached) >= 2:
                break
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.1)
        else:
            pytest.fail("preprocess never got going")
        assert any("resource_tracker" in command for _, command in _session(process.pid))
        os.kill(process.pid, sig)
        process.wait(timeout=60)
        left = _wait_gone(process.pid, 10 if sig == signal.SIGKILL else 30)
        assert left == [], left
        if sig == signal.SIGTERM:
            assert process.returncode == 130
            assert "interrupted; finished work is kept" in process.stderr.read()
        else:
            assert process.returncode == -signal.SIGKILL
    finally:
        _kill_session(process.pid)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


RAY_DRIVER = textwrap.dedent("""
    import sys, time
    from f2b_study.cli import _sigterm_as_interrupt
    from f2b_study.inference.ray_engine import import_ray, init_ray
    _sigterm_as_interrupt()
    ray = import_ray()
    code = 0
    try:
        init_ray(ray, None)

        @ray.remote
        def wait(x):
            time.sleep(300)
            return x

        refs = [wait.remote(i) for i in range(2)]
        print("started", flush=True)
        ray.get(refs)
    except KeyboardInterrupt:
        code = 130
    finally:
        ray.shutdown()
    sys.exit(code)
""")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc")
def test_sigterm_to_a_local_ray_driver_is_a_clean_interrupt() -> None:
    pytest.importorskip("ray", reason="the optional extra 'cluster' is not installed")
    process = subprocess.Popen([sys.executable, "-c", RAY_DRIVER], cwd=REPO, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(2)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=120) == 130  # not ray's own sys.exit(15)
        assert _wait_gone(process.pid, 30) == []
    finally:
        _kill_session(process.pid)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_a_worker_whose_parent_is_already_gone_exits_at_once(tmp_path: Path) -> None:
    # the parent PID given is not this worker's parent: it died before the death signal could be armed
    code = (f"from f2b_study.faces.preprocess import _init_worker; _init_worker({str(tmp_path)!r}, parent=1); "
            "print('still here')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "still here" not in done.stdout
