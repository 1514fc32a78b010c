"""Atomic file writes: write a temporary file beside the target, fsync it, then rename.

A reader (or a rerun after a kill) sees either the old file or the complete new one, never a
half-written one, because `os.replace` within one directory is atomic on POSIX.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path in `target`'s directory; rename it onto `target` on success.

    On any exception the temporary file is removed and `target` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last: keras.saving and np.savez look at it.
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; the target gets what any new file would: 0666 − umask.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask():
    """The process's umask, read without changing it (Linux names it in /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, briefly
    os.umask(mask)
    return mask


def write_bytes(target, data: bytes):
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target, obj):
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
