"""The errors keras_bp reports to its users as one line (see `keras_bp.cli.run`).

Kept free of TensorFlow imports, so a bad command line fails in a fraction of a second.
"""


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
