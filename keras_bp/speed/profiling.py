"""Profile a trainer's steady-state steps under TensorFlow's own profiler.

`profile_trainer` warms a trainer up (`trainer_window`: the training floor, or a trainer as it
ships), times its steps, then runs them again under `tf.profiler.experimental` (`capture`) and
reads the `XSpace` written with `keras_bp.speed.op_times.step_profile`: each op's self time per
step, on its own thread and in the intra-op pool. `scripts/profile_ops.py` (`make profile`)
prints it.
"""

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from keras_bp.config import FIT_FASTEST, FitConfig, LoopConfig, Speed
from keras_bp.data.batches import epoch_chunks, epoch_permutation
from keras_bp.gradients import make_source
from keras_bp.model import build_model
from keras_bp.speed import floors
from keras_bp.speed.op_times import Capture, step_profile
from keras_bp.training.compiled import CompiledSteps, epoch_input
from keras_bp.training.fit_input import EpochOrder

# Each as it ships, and `fit-fastest`: fit with `FIT_FASTEST`, the bench's fastest recipe fit;
# `…-gather`: the same gathering each step's batch from the training set instead of slicing it
# from the epoch's permuted copy (`keras_bp.training.compiled.epoch_input`, `fit_input`).
GATHER = "-gather"
TRAINERS = (
    "training-floor",
    "tape",
    "manual",
    "fit",
    "fit-fastest",
    *(f"{name}{GATHER}" for name in ("tape", "manual", "fit-fastest")),
)
# `floors.training_floor_seconds(steps)` runs a 2-step call (its trace) before the timed one,
# and both run inside the window; a test checks the floor's updates come out at 1 per step.
FLOOR_WARM_STEPS = 2


# The trainers' windows: steady-state steps, traced and compiled beforehand.


@dataclasses.dataclass
class Window:
    """`run()` trains `steps` steps of a trainer that has already traced and compiled them."""

    run: Callable[[], None]
    steps: int
    speed: Speed | None


def trainer_window(trainer, data, steps, seed=0, batch_size=None) -> Window:
    """`trainer` (one of `TRAINERS`) as it ships, warmed up, over the first `steps` batches
    of `(seed, epoch 0)`'s order of `data = ((x_train, y_train), test)`."""
    (x_train, y_train), _ = data
    batch_size = batch_size or FitConfig().batch_size
    if not 0 < steps * batch_size <= len(x_train):
        raise ValueError(
            f"steps: {steps} batches of {batch_size} do not fit in {len(x_train)} samples"
        )
    if trainer == "training-floor":
        floors.training_floor_seconds(1)  # builds and traces the floor's graph
        return Window(lambda: floors.training_floor_seconds(steps), steps + FLOOR_WARM_STEPS, None)
    if trainer not in TRAINERS:
        raise ValueError(f"trainer: expected one of {TRAINERS}, received {trainer!r}")
    name, copy = trainer.removesuffix(GATHER), not trainer.endswith(GATHER)
    if name in ("fit", "fit-fastest"):
        speed = FitConfig().speed if name == "fit" else FIT_FASTEST
        return _fit_window(x_train, y_train, steps, seed, batch_size, speed, copy)
    return _loop_window(name, x_train, y_train, steps, seed, batch_size, LoopConfig().speed, copy)


def _loop_window(kind, x_train, y_train, steps, seed, batch_size, speed, copy):
    source = make_source(kind, seed=seed, fused=speed.fused)
    x, y = tf.constant(x_train), tf.constant(y_train)
    compiled = CompiledSteps(
        source,
        x.shape[1],
        y.shape[1],
        xla=speed.xla,
        chunk_shape=(speed.steps_per_call, batch_size),
    )
    perm = epoch_permutation(seed, 0, len(x_train))
    _, _, order = epoch_input(x, y, perm, copy)
    chunks = [
        indices
        for _, indices in epoch_chunks(
            order[: steps * batch_size], batch_size, 0, speed.steps_per_call
        )
    ]

    def run():
        # As keras_bp.training.loop does: the epoch's input (its permuted copy, by default), then
        # the chunks, each one's results back to NumPy.
        xs, ys, _ = epoch_input(x, y, perm, copy)
        for indices in chunks:
            [t.numpy() for t in compiled.run(xs, ys, indices)]

    xs, ys, _ = epoch_input(x, y, perm, copy)
    [t.numpy() for t in compiled.run(xs, ys, chunks[0])]  # trace, and compile under XLA
    del xs, ys
    return Window(run, steps, speed)


def _fit_window(x_train, y_train, steps, seed, batch_size, speed, copy):
    keras.utils.set_random_seed(seed)
    model = build_model(speed=speed)
    order = EpochOrder(x_train, y_train, batch_size, seed, copy)  # the recipe's input (fit_input)

    def fit(n):
        model.fit(
            order.dataset, epochs=1, steps_per_epoch=n, shuffle=False, callbacks=[order], verbose=0
        )

    fit(speed.steps_per_call)  # traces Keras's train function
    return Window(lambda: fit(steps), steps, speed)


# Running under the profiler.


def capture(run, logdir) -> Capture:
    """Run `run()` under TensorFlow's profiler, writing into `logdir`; return what it traced."""
    logdir = Path(logdir)
    before = _traces(logdir)
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0)
    tf.profiler.experimental.start(str(logdir), options=options)
    try:
        start_ns, tick = time.time_ns(), time.perf_counter()
        run()
        seconds, stop_ns = time.perf_counter() - tick, time.time_ns()
    finally:
        tf.profiler.experimental.stop()
    # The profiler names its directory by the second, so a file may be new or rewritten.
    written = [p for p, stamp in _traces(logdir).items() if before.get(p) != stamp]
    if len(written) != 1:
        raise RuntimeError(f"expected one new profile under {logdir}, found {len(written)}")
    (path,) = written
    space = xplane_pb2.XSpace.FromString(path.read_bytes())
    return Capture(space, start_ns, stop_ns, seconds, path)


def _traces(logdir):
    return {p: p.stat().st_mtime_ns for p in Path(logdir).rglob("*.xplane.pb")}


def profile_trainer(trainer, data, steps, logdir, seed=0):
    """The trainer's `step_profile`, with its wall time per step measured once without the
    profiler, after warming up and just before the profiled run of the same steps."""
    window = trainer_window(trainer, data, steps, seed)
    tick = time.perf_counter()
    window.run()
    unprofiled = time.perf_counter() - tick
    profile = step_profile(capture(window.run, logdir), window.steps)
    profile.update(
        trainer=trainer,
        unprofiled_wall_us=unprofiled / window.steps * 1e6,
        speed=dataclasses.asdict(window.speed) if window.speed else None,
    )
    return profile
