"""`fit`'s backup, verified: Keras's `BackupAndRestore` files checked against their digests.

Keras writes its backup in place and its HDF5 weights carry no checksums: a file cut short by a
kill fails to load (Keras then falls back to the epoch before), but a flipped byte loads
silently, and a deleted weights file beside its metadata resumes from untrained weights.
`BackupDigests` records the SHA-256 of every backup file after Keras writes it, and
`verify_backup` checks them before `fit` reads them, falling back to the epoch before as the
loop's checkpoints do (`keras_bp.training.checkpoints`).
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import keras

from keras_bp.runtime import atomic
from keras_bp.runtime.errors import UsageError

# What `keras.callbacks.BackupAndRestore` writes; with `double_checkpoint=True` it first copies
# both to `<name>.bkp`, the backup of the epoch before.
BACKUP_FILES = ("latest.weights.h5", "training_metadata.json")


class BackupDigests(keras.callbacks.Callback):
    """Record the SHA-256 of Keras's backup files after each epoch's backup, in `manifest`.

    Keras's HDF5 weights carry no checksums: a flipped byte loads silently, and a deleted
    weights file beside its metadata resumes from untrained weights. `verify_backup` checks
    the files against these digests before `fit` reads them. Place it after `BackupAndRestore`.
    """

    def __init__(self, backup, manifest):
        super().__init__()
        self.backup, self.manifest = Path(backup), Path(manifest)

    def on_epoch_end(self, epoch, logs=None):
        atomic.write_json(
            self.manifest,
            {"latest": _digests(self.backup, ""), "previous": _digests(self.backup, ".bkp")},
        )


def verify_backup(backup, manifest):
    """Before `fit`: leave in `backup` only a backup whose files match their recorded digests.

    The newest backup is used if it verifies; else the epoch before's (`.bkp`) is copied over it,
    with a one-line warning naming the damaged files. A backup written before its digests were
    (a kill between the two) cannot be checked and is discarded, with a warning: its epoch is
    redone.

    Raises:
        UsageError: the backup has recorded digests and no pair of files matches them.
    """
    backup, manifest = Path(backup), Path(manifest)
    if not any(backup.glob("*")):
        return
    try:
        recorded = json.loads(manifest.read_text())
        known = [dict(recorded["latest"]), dict(recorded["previous"])]
    except (OSError, ValueError, KeyError, TypeError):
        print(
            f"warning: discarding the unverified backup in {backup}; starting over", file=sys.stderr
        )
        shutil.rmtree(backup)
        return
    latest = _digests(backup, "")
    if latest in known:
        return
    damaged = [n for n, d in latest.items() if d not in {k.get(n) for k in known}]
    for name in damaged:
        print(
            f"warning: skipping backup file {backup / name}: it is missing or does not match "
            "its recorded SHA-256 (damaged, or cut short by a kill)",
            file=sys.stderr,
        )
    previous = _digests(backup, ".bkp")
    if previous in known and None not in previous.values():
        for name in BACKUP_FILES:
            shutil.copyfile(backup / f"{name}.bkp", backup / name)
        return
    raise UsageError(
        f"no intact backup in {backup} ({', '.join(damaged)} damaged, and no intact backup "
        "of the epoch before); pass --fresh to start over"
    )


def _digests(backup, suffix):
    """`{name: sha256 or None if missing}` for Keras's backup files with `suffix`."""
    found = {}
    for name in BACKUP_FILES:
        path = Path(backup) / f"{name}{suffix}"
        found[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    return found
