"""Ctrl-C and SIGTERM during training: stop at the next safe point, save, say so, exit.

Inside `stop_requests()`, the first SIGINT or SIGTERM only records itself; the trainer checks
`requested` at its safe points (the loop after each compiled call, `fit` after each batch), saves
what a resume needs and raises `keras_bp.runtime.errors.Interrupted`, which the command line turns
into one line and exit code 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).

A second signal ends the process at once, even while the main thread is deep inside a
TensorFlow kernel, where Python runs no signal handler until the kernel returns: Python's
C-level handler writes every signal to a wake-up pipe as it arrives, and a watcher thread
counts them there.

What the first signal does depends on the request's `phase`, which the trainer moves on:
`"setup"` (before the first step: importing, loading, waiting for a cluster's peers, restoring)
ends the process at once, since nothing has been trained that a save could keep; `"training"`
stops at the next safe point; `"finishing"` (after the last step: the final evaluation and the
save, a few seconds) lets the run finish, and says so. `exit_on_signal()` covers a whole command,
so a signal before any trainer starts is one line too.
"""

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """`requested`: the number of the first signal received, or `None`; `phase`: `"setup"`,
    `"training"` or `"finishing"` (see the module's docstring)."""

    def __init__(self, phase="training"):
        self.requested = None
        self.phase = phase


def exit_on_signal():
    """For a command's whole run: outside a trainer's `stop_requests()`, SIGINT or SIGTERM ends
    the process at once with one line (exit code 128 + the signal), not a traceback."""
    return stop_requests(phase="setup")


@contextlib.contextmanager
def stop_requests(phase="training"):
    """Turn SIGINT and SIGTERM into stop requests for the `with` block, starting in `phase`."""
    request = StopRequest(phase)
    if threading.current_thread() is not threading.main_thread():
        yield request  # handlers can only be installed from the main thread
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    # The terminal as it is now: TensorFlow's start points fd 2 elsewhere for a while.
    terminal = os.dup(2)
    watcher = threading.Thread(target=_watch, args=(read_fd, request, terminal), daemon=True)
    watcher.start()
    # The pipe first and last, around the handlers: no signal falls between the two.
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous_handlers = {s: signal.signal(s, _record_only) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watcher's read ends: it exits
        watcher.join()
        os.close(read_fd)
        os.close(terminal)


def _record_only(signum, frame):
    """The Python-level handler: nothing to do, the watcher has seen the signal already."""


def _watch(read_fd, request, terminal):
    def say(line):
        sys.stderr.flush()  # after anything the main thread has printed
        os.write(terminal, f"\n{line}\n".encode())

    while data := os.read(read_fd, 1):
        signum = data[0]
        if signum not in SIGNALS:
            continue
        name = signal.Signals(signum).name
        if request.requested is None and request.phase == "setup":
            say(
                f"{os.path.basename(sys.argv[0])}: interrupted by {name} before training "
                "started: nothing to save, any earlier resume state is as it was; exiting"
            )
            os._exit(128 + signum)
        if request.requested is None:
            request.requested = signum
            if request.phase == "finishing":
                what = "training is done; evaluating and saving the run take a few seconds more"
            else:
                what = "stopping at the next safe point"
            say(f"{name}: {what}; send it again to exit now")
            continue
        say(f"interrupted again by {name}: exiting now, without saving")
        os._exit(128 + signum)
