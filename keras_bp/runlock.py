"""One run per output directory at a time: an exclusive OS lock, held for the whole run.

The lock is `fcntl.flock` on `OUT/.keras_bp.lock`, which also holds the holder's PID. The
operating system releases it when the holder exits, however it exits, so a killed run never
leaves a stale lock; the file itself stays, unlocked.
"""

import fcntl
import os
from pathlib import Path

from keras_bp.errors import UsageError

LOCK_NAME = ".keras_bp.lock"


class RunLock:
    """`with RunLock(out):` holds `out` for this process, or refuses at once in one line.

    Raises:
        UsageError: another process holds `out`; the message names it and the holder's PID.
    """

    def __init__(self, out):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self._fd = None

    def __enter__(self):
        self.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"--out {self.out} is in use by another run (PID {holder}); wait for it to "
                "finish, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
