"""What keras_bp may keep in a run's `OUT/resume/`, and nothing else: checked before, removed after.

Every name a trainer writes there is listed below, with whether it is a file or a directory:
the run log (`keras_bp.training.runlog`), the loop's TensorFlow checkpoints with the temporary
files TensorFlow writes on the way, `fit`'s Keras backup and its digests, early stopping's best
weights, and the temporary files of `keras_bp.runtime.atomic`. `check` refuses, in one line, a
`resume/` holding anything else (a user's file, or one of these names as the wrong kind), so
no run resumes from, or deletes, what keras_bp did not write; `remove` deletes only the listed
names and then each directory it leaves empty.
"""

import os
import re
from pathlib import Path

from keras_bp.runtime.errors import UsageError

FILE, DIRECTORY = "file", "directory"


def _atomic_temporary(stem, suffix):
    """`keras_bp.runtime.atomic`'s temporary file for `stem.suffix`: `.stem.RANDOM.tmp.suffix`."""
    return rf"\.{re.escape(stem)}\.[A-Za-z0-9_]+\.tmp{re.escape(suffix)}"


_TENSORFLOW_SHARD = r"(\.index|\.data-\d{5}-of-\d{5})(\.tempstate\d+)?"
# {directory inside resume/: [(pattern of a name in it, kind)]}; "" is resume/ itself.
LAYOUT = {
    "": [
        (r"run\.json", FILE),
        (_atomic_temporary("run", ".json"), FILE),
        (r"checkpoints", DIRECTORY),
        (r"keras", DIRECTORY),
        (r"keras\.sha256\.json", FILE),
        (_atomic_temporary("keras.sha256", ".json"), FILE),
        (r"best", DIRECTORY),
    ],
    # tf.train.CheckpointManager: `checkpoint` (the index, renamed from `checkpoint.tmpUUID`),
    # each checkpoint's data and index, and `ckpt-N_temp/` while one is being saved.
    "checkpoints": [
        (r"checkpoint(\.tmp[0-9a-f]{32})?", FILE),
        (rf"ckpt-\d+{_TENSORFLOW_SHARD}", FILE),
        (r"ckpt-\d+_temp", DIRECTORY),
    ],
    "checkpoints/ckpt-N_temp": [(rf"part-\d{{5}}-of-\d{{5}}{_TENSORFLOW_SHARD}", FILE)],
    # keras.callbacks.BackupAndRestore with double_checkpoint=True.
    "keras": [(r"(latest\.weights\.h5|training_metadata\.json)(\.bkp)?", FILE)],
    "best": [(r"epoch-\d+\.npz", FILE), (r"\.epoch-\d+\.[A-Za-z0-9_]+\.tmp\.npz", FILE)],
}


def check(resume):
    """Refuse a `resume` directory holding anything keras_bp does not write there.

    Raises:
        UsageError: naming the first such path, what it is, and what to do.
    """
    resume = Path(resume)
    if not os.path.lexists(resume):
        return
    if resume.is_symlink() or not resume.is_dir():
        raise UsageError(_refusal(resume, "is a " + _kind(resume), f"a {DIRECTORY}"))
    for path, expected in _walk(resume, ""):
        if expected is None:
            raise UsageError(
                f"{resume} holds {path.relative_to(resume)}, which keras_bp did not write: it "
                "keeps its resume state there and deletes that state when a run finishes; "
                "move your files out of it, or choose another --out"
            )
        if _kind(path) != expected:
            raise UsageError(_refusal(path, f"is a {_kind(path)}", f"a {expected}"))


def remove(resume):
    """Delete what keras_bp wrote in `resume` (after `check`), then each directory it leaves
    empty; anything else stays."""
    resume = Path(resume)
    if not resume.is_dir() or resume.is_symlink():
        return
    directories = []
    for path, expected in _walk(resume, ""):
        if expected is None or _kind(path) != expected:
            continue
        if expected == FILE:
            path.unlink(missing_ok=True)
        else:
            directories.append(path)
    for directory in [*reversed(directories), resume]:  # the deepest first
        try:
            directory.rmdir()
        except OSError:  # not empty: it holds something keras_bp did not write
            pass


def _walk(directory, where):
    """`(path, expected kind or None)` for everything under `directory`, parents before their
    children; the children of a directory that is not keras_bp's are not visited."""
    for path in sorted(directory.iterdir()):
        expected = _expected(where, path.name)
        yield path, expected
        if expected == DIRECTORY and _kind(path) == DIRECTORY:
            inner = "checkpoints/ckpt-N_temp" if where == "checkpoints" else path.name
            yield from _walk(path, inner)


def _expected(where, name):
    for pattern, kind in LAYOUT.get(where, []):
        if re.fullmatch(pattern, name):
            return kind
    return None


def _kind(path):
    if path.is_symlink():
        return "symlink"
    if path.is_dir():
        return DIRECTORY
    if path.is_file():
        return FILE
    return "special file"  # a FIFO, a socket, a device


def _refusal(path, what, expected):
    return (
        f"{path} {what}, where keras_bp keeps {expected} of its resume state; move it away, "
        "or choose another --out"
    )
