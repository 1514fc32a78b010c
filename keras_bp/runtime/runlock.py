"""One run per output directory at a time: an exclusive OS lock, held for the whole run.

The lock is `fcntl.flock` on `OUT/.keras_bp.lock`, which also holds the holder's PID. The
operating system releases it when the holder exits, however it exits, so a killed run never
leaves a stale lock; the file itself stays, unlocked.
"""

import fcntl
import os
import time
from pathlib import Path

from keras_bp.runtime.errors import UsageError

LOCK_NAME = ".keras_bp.lock"


class RunLock:
    """`with RunLock(out):` holds `out` for this process, or refuses at once in one line.

    Raises:
        UsageError: another process holds `out` (the message names it and the holder's PID),
            or `out` cannot be created or written.
    """

    def __init__(self, out):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self._fd = None

    def __enter__(self):
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UsageError(f"--out {self.out}: cannot write there ({e.strerror or e})") from None
        try:
            _lock_or_refuse(fd, self.out, patience=0.2)  # outlast a script's quick check
            pid = f"{os.getpid()}\n".encode()
            os.pwrite(fd, pid, 0)  # then cut any longer PID's tail: never an empty file
            os.ftruncate(fd, len(pid))
        except BaseException as e:
            os.close(fd)
            if isinstance(e, OSError):
                raise UsageError(f"--out {self.out}: cannot write there ({e.strerror})") from None
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def check_not_in_use(out):
    """Refuse at once if another process holds `out`; create nothing. Scripts call it at start,
    so a collision fails in a fraction of a second; `RunLock` is what guarantees it."""
    try:
        fd = os.open(Path(out) / LOCK_NAME, os.O_RDWR)
    except OSError:
        return  # no lock file: no run has ever held this directory, or it cannot be read
    try:
        _lock_or_refuse(fd, out)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_or_refuse(fd, out, patience=0.0):
    """Take the lock on `fd`, trying for `patience` seconds, or refuse naming its holder."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    raise UsageError(
        f"--out {out} is in use by another run (PID {holder}); wait for it to finish, or "
        "choose another --out"
    )
