"""The errors keras_bp reports to its users as one line (see `keras_bp.cli.run`).

Kept free of TensorFlow imports, so a bad command line fails in a fraction of a second.
"""

import errno


class UsageError(ValueError):
    """Bad input from the user (a flag, a path, a resume conflict): exit code 2."""


class InputError(ValueError):
    """Training data or settings that cannot be trained on: exit code 2."""


class NonFiniteLoss(RuntimeError):
    """The loss or the weights became NaN or Inf; nothing was saved over the last good state.

    Exit code 1: the input was valid, the training diverged.
    """


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM stopped training at a safe point; the message says what was saved.

    Exit code 128 + `signum`, as a shell reports a process ended by that signal.
    """

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class SaveFailed(RuntimeError):
    """Training could not save its state (a full disk, a read-only directory); the message says
    what survives. Exit code 1: the input was valid, the machine refused the write.
    """


# The errors of a write the machine refused, as the one-line message names them.
_REFUSED_WRITES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_failure(error: BaseException):
    """Why `error` is a write the machine refused (`"no space left on device"`), or `None`.

    It reads an `OSError`'s errno, and otherwise the message: h5py and TensorFlow report a full
    disk as their own errors (`ResourceExhaustedError: … No space left on device`), and a
    TensorFlow error may wrap the OSError that caused it.
    """
    while error is not None:
        if isinstance(error, OSError) and error.errno in _REFUSED_WRITES:
            return _REFUSED_WRITES[error.errno]
        text = str(error).lower()
        for code, reason in _REFUSED_WRITES.items():
            if reason in text or f"errno = {code}," in text:
                return reason
        error = error.__cause__ or error.__context__
    return None
