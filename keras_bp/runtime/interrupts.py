"""Ctrl-C and SIGTERM during training: stop at the next safe point, save, say so, exit.

Inside `stop_requests()`, the first SIGINT or SIGTERM only records itself; the trainer checks
`requested` at its safe points (the loop after each compiled call, `fit` after each batch), saves
what a resume needs and raises `keras_bp.runtime.errors.Interrupted`, which the command line turns
into one line and exit code 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).

A second signal ends the process at once, even while the main thread is deep inside a
TensorFlow kernel, where Python runs no signal handler until the kernel returns: Python's
C-level handler writes every signal to a wake-up pipe as it arrives, and a watcher thread
counts them there.
"""

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """`requested`: the number of the first signal received, or `None`."""

    def __init__(self):
        self.requested = None


@contextlib.contextmanager
def stop_requests():
    """Turn SIGINT and SIGTERM into stop requests for the `with` block."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # handlers can only be installed from the main thread
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    watcher = threading.Thread(target=_watch, args=(read_fd, request), daemon=True)
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


def _record_only(signum, frame):
    """The Python-level handler: nothing to do, the watcher has seen the signal already."""


def _watch(read_fd, request):
    while data := os.read(read_fd, 1):
        signum = data[0]
        if signum not in SIGNALS:
            continue
        name = signal.Signals(signum).name
        if request.requested is None:
            request.requested = signum
            print(
                f"\n{name}: stopping at the next safe point; send it again to exit now",
                file=sys.stderr,
            )
            continue
        print(f"\ninterrupted again by {name}: exiting now, without saving", file=sys.stderr)
        sys.stderr.flush()
        os._exit(128 + signum)
