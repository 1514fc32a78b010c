"""Where a command's wall time goes, phase by phase: the split every trainer prints at its end.

A `WallClock` starts when the process did, so its first phase holds the interpreter's start
and the imports (TensorFlow's takes most of it). Each `lap(name)` adds the seconds since the
last lap to `name`; `move(source, target, seconds)` moves seconds measured inside one phase,
such as the checkpoints saved during training, to another.

    clock = WallClock.since_process_start()
    ...imports...
    clock.lap("start")          # Python, TensorFlow and keras_bp imported
    data = load()
    clock.lap("data")
"""

import contextlib
import os
import statistics
import time

# The phases in the order a run goes through them, with what each holds.
PHASES = {
    "start": "Python, TensorFlow and keras_bp imported, settings applied",
    "data": "MNIST loaded, verified and preprocessed",
    "setup": "model, optimizer and compiled steps built; the resume state read",
    "trace": "tracing and compiling: the first epoch's seconds above a later epoch's",
    "training": "the epochs' steps once compiled",
    "evaluation": "the test set at the end; in the loops also the validation and test sets "
    "after each epoch (fit's stay in its training)",
    "checkpoints": "resume state saved during and after each epoch",
    "saving": "the model exported, model.keras and metrics.json written",
}


def process_age():
    """Seconds since this process started (from Linux's /proc), or `None` where unknown."""
    try:
        with open("/proc/self/stat") as f:
            # Field 22 counts clock ticks since boot; the command name (field 2) may hold spaces.
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return max(float(f.read().split()[0]) - started, 0.0)
    except (OSError, ValueError, IndexError):
        return None


def startup_seconds(epoch_seconds):
    """Tracing and compiling: the first epoch's seconds above the median later epoch's (0 for
    fewer than two epochs: nothing to compare with)."""
    first, *later = epoch_seconds or [0.0]
    return max(first - statistics.median(later), 0.0) if later else 0.0


class WallClock:
    """Seconds per named phase of one command, in the order the phases first ran."""

    def __init__(self, already=0.0):
        self.seconds = {}
        self._last = time.perf_counter() - already

    @classmethod
    def since_process_start(cls):
        """A clock whose first lap counts from the process's start, imports included."""
        return cls(already=process_age() or 0.0)

    def lap(self, name):
        """Add the seconds since the last lap (or the start) to `name`."""
        now = time.perf_counter()
        self.add(name, now - self._last)
        self._last = now

    def add(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def move(self, source, target, seconds):
        """Count `seconds` of `source` as `target` instead (a part measured inside it)."""
        seconds = min(seconds, self.seconds.get(source, 0.0))
        self.add(source, -seconds)
        self.add(target, seconds)

    def rounded(self):
        """`{phase: seconds}` rounded to milliseconds, for `metrics.json`."""
        return {name: round(s, 3) for name, s in self.seconds.items()}

    def total(self):
        return sum(self.seconds.values())

    def summary(self):
        """One line: `wall time 15.2 s: start 5.1, data 0.4, …`."""
        order = [*PHASES, *(name for name in self.seconds if name not in PHASES)]
        parts = ", ".join(
            f"{name} {self.seconds[name]:.1f}" for name in order if name in self.seconds
        )
        return f"wall time {self.total():.1f} s: {parts}"


class PhaseTimes:
    """`with timed("evaluation"): …` adds the block's wall seconds to `seconds["evaluation"]`:
    parts of a phase, to `WallClock.move` out of it once it ends."""

    def __init__(self):
        self.seconds = {}

    @contextlib.contextmanager
    def __call__(self, phase):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
