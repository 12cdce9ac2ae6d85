"""One run per output folder: `run_lock(folder, command)` holds `folder/.f2b.lock` while a command writes there.

    with run_lock(out, "train"):
        ...  # a second run into `out` now stops at once: InputError (exit 2) naming this run's PID

The lock file is created atomically (O_CREAT | O_EXCL) and records the holder: PID, host, boot ID, the process's
start time (from /proc, so that a recycled PID is not mistaken for the holder), command, start time and a random
token. It is removed when the block ends, also on an exception or Ctrl-C. A lock whose holder is gone (kill -9, a
crash, a reboot) is taken over with a warning:

- same host: the holder is gone when its PID is not running, is a zombie, or is a process that started at another
  time than the holder did (PID reuse), or when the machine has rebooted since (another boot ID);
- another host (shared storage): its liveness cannot be seen from here, so the holder refreshes the lock file's
  modification time every HEARTBEAT_S seconds, and a lock from another host is stale only once that heartbeat is
  older than FOREIGN_STALE_AFTER_S (15 minutes); until then the run is refused, naming the host.

Within one process the same folder may be locked again (nested commands): the inner block shares the outer lock.
Under torchrun only one rank (rank 0) should take the lock, since the ranks share the folder.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from f2b_study.errors import InputError

log = logging.getLogger(__name__)

LOCK_NAME = ".f2b.lock"
HEARTBEAT_S = 60.0  # the holder touches its lock this often
FOREIGN_STALE_AFTER_S = 15 * 60.0  # a lock from another host with no heartbeat for this long is stale
STARTING_GRACE_S = 2.0  # a lock file still empty this long after creation is a holder that died while writing it
TAKEOVER_NAME = ".f2b.lock.takeover"  # held for milliseconds while one process removes a stale lock

_held: dict[Path, int] = {}  # folders this process holds -> nesting depth
_held_guard = threading.Lock()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None where /proc is absent.
    With the boot ID it tells a PID's holder from a later process given the same PID."""
    status = _proc_stat(pid)
    return int(status[19]) if status else None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _me(command: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
            "process_start": process_start(os.getpid()), "command": command,
            "started": now.isoformat(timespec="seconds"), "token": uuid.uuid4().hex}


def _read(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file; None while it is being written (or if it is garbage)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def stale_reason(holder: dict[str, Any], lock_age_s: float) -> str | None:
    """Why ``holder`` no longer holds its lock, or None when it may still be running (an InputError then)."""
    if holder.get("host") != socket.gethostname():
        if lock_age_s > FOREIGN_STALE_AFTER_S:
            return (f"its holder on host {holder.get('host')!r} has not refreshed it for {lock_age_s / 60:.0f} "
                    f"minutes (limit {FOREIGN_STALE_AFTER_S / 60:.0f})")
        return None
    pid = holder["pid"]
    boot = _boot_id()
    if boot is not None and holder.get("boot_id") not in (None, boot):
        return "the machine has restarted since it was taken"
    if not _pid_alive(pid):
        return f"its holder, PID {pid}, is not running"
    status = _proc_stat(pid)
    if status is not None:
        if status[0] in ("Z", "X"):
            return f"its holder, PID {pid}, has exited"
        if holder.get("process_start") is not None and int(status[19]) != holder["process_start"]:
            return f"PID {pid} now belongs to another process (the holder has exited)"
    return None


def _describe(holder: dict[str, Any]) -> str:
    return (f"{holder.get('command', '?')!s} run, PID {holder['pid']} on host {holder.get('host', '?')!s}, "
            f"since {holder.get('started', '?')!s}")


def _create(path: Path, me: dict[str, Any]) -> bool:
    """Create the lock file holding ``me``; False when it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(me))
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _remove_stale(folder: Path, path: Path, judged: dict[str, Any] | None, judged_mtime: float) -> None:
    """Remove the stale lock we judged, unless another process replaced it meanwhile: the check and the removal
    happen under a short-lived takeover file, so two processes that both saw the stale lock cannot both win."""
    mutex = folder / TAKEOVER_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
          "process_start": process_start(os.getpid())}
    if not _create(mutex, me):
        other = _read(mutex)
        with contextlib.suppress(OSError):
            age = time.time() - mutex.stat().st_mtime
            # a takeover lasts milliseconds: one left behind belongs to a process that died in it
            if (other is not None and stale_reason(other, age)) or age > FOREIGN_STALE_AFTER_S:
                mutex.unlink()
        return  # retry from the start either way
    try:
        current = _read(path)
        with contextlib.suppress(FileNotFoundError):
            same = (current == judged) if judged is not None else path.stat().st_mtime == judged_mtime
            if same:
                path.unlink()
    finally:
        with contextlib.suppress(FileNotFoundError):
            mutex.unlink()


def _heartbeat(path: Path, token: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        holder = _read(path)
        if holder is None or holder.get("token") != token:
            return
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def run_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder``'s run lock for the block (creating the folder); yields the lock file's path. InputError
    (exit 2) naming the holder's PID when another live run holds it; a stale lock is taken over with a warning."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError.at(folder, expected="an output folder (this is a file)", show_value=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError.at(folder, show_value=False,
                            expected=f"an output folder that can be created ({error.strerror or error})") from None
    key = folder.resolve()
    path = folder / LOCK_NAME
    with _held_guard:
        if key in _held:  # nested in this process: share the outer lock
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return

    me = _me(command)
    _acquire(folder, path, me)
    with _held_guard:
        _held[key] = 1
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, me["token"], stop), name="f2b-lock-heartbeat",
                            daemon=True)
    beat.start()
    try:
        yield path
    finally:
        stop.set()
        with _held_guard:
            _held.pop(key, None)
        holder = _read(path)
        if holder is not None and holder.get("token") == me["token"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _acquire(folder: Path, path: Path, me: dict[str, Any]) -> None:
    started = time.monotonic()
    warned = False
    while True:
        try:
            if _create(path, me):
                return
        except OSError as error:
            raise InputError.at(folder, show_value=False,
                                expected=f"an output folder that can be written ({error.strerror or error})") from None
        holder = _read(path)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue  # released meanwhile: try again
        age = max(0.0, time.time() - mtime)
        if holder is None:
            if age < STARTING_GRACE_S:  # being written by its creator right now
                time.sleep(0.05)
                continue
            reason = "it is empty or unreadable (its creator died while writing it)"
        else:
            reason = stale_reason(holder, age)
            if reason is None:
                where = ("" if holder.get("host") == socket.gethostname() else
                         f"; f2b-study cannot see processes on host {holder.get('host')!r}: if that run is gone, "
                         f"delete {path} (or wait: after {FOREIGN_STALE_AFTER_S / 60:.0f} minutes without a "
                         "heartbeat the lock is taken over)")
                raise InputError(f"{folder}: another f2b-study run is writing here ({_describe(holder)}): expected "
                                 f"an output folder no other run is using; wait for PID {holder['pid']} to finish, "
                                 f"or choose another --out{where}")
        if not warned:
            log.warning("%s: taking over the lock of a run that is gone (%s)%s", folder, reason,
                        f"; it was the {_describe(holder)}" if holder else "")
            warned = True
        _remove_stale(folder, path, holder, mtime)
        if time.monotonic() - started > 30:  # another process keeps its takeover file: something is badly wrong
            raise InputError.at(path, show_value=False,
                                expected=f"a lock that can be taken over (delete it and {folder / TAKEOVER_NAME} "
                                "if no run is using the folder)")
        time.sleep(0.01)
