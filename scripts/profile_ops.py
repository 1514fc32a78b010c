"""Where each microsecond of a training step goes, op by op, in TensorFlow's own profiler.

    python scripts/profile_ops.py [--trainers training-floor,tape,manual,fit,fit-fastest,…]
                                  [--steps 468] [--top 20] [--out runs/profile] [--verbose]

For the training floor and each trainer as it ships (the loops with `LoopConfig().speed`, `fit`
with `FitConfig().speed`, whatever those are today), it warms up (traces and compiles), times
`--steps` steps over real MNIST in epoch 0's seeded order, then runs the same steps again under
`tf.profiler.experimental` (`keras_bp/speed/profiling.py`) and reads the trace
(`keras_bp/speed/op_times.py`). What runs:

- training-floor: one call of `floors.training_floor_seconds(steps)`, the graph the bench's
  training floor times (without XLA), so the window holds its 2-step trace call and its setup
  (the eager ops in its table) too;
- tape, manual: the loop's compiled chunks (`keras_bp.training.compiled.CompiledSteps`) over the
  epoch's first `--steps` batches, each chunk's results read back as `keras_bp.training.loop` does,
  after putting the epoch's training set into its order (one gather of every row, in the window);
- fit: `model.fit(steps_per_epoch=steps)` of `build_model()` on the recipe's input
  (`keras_bp.training.fit_input.EpochOrder`), without the recipe's guards, checkpoints or
  evaluation;
- fit-fastest: the same with `keras_bp.config.FIT_FASTEST` (`--steps-per-execution 32
  --fused`), the fastest `fit` that keeps the recipe's updates;
- tape-gather, manual-gather, fit-fastest-gather: the same, each step gathering its batch from
  the training set instead of slicing it from the epoch's copy (as before that copy; the same
  batches).

For each, a header line: the wall µs/step with and without the profiler, the busy µs/step
summed over threads, the µs/step no thread is busy, the CPU. Then a table of the `--top` ops
by µs/step: each op's self time on its own thread plus the intra-op pool's tasks it handed out;
then everything else, then the total. Traces go to `OUT/<trainer>/` (TensorBoard's profile
plugin reads them), every figure to `OUT/profile.json`.
"""

import argparse
from pathlib import Path

from keras_bp import cli
from keras_bp.config import FitConfig
from keras_bp.data import SHAPES

TRAINERS = (
    "training-floor",
    "tape",
    "manual",
    "fit",
    "fit-fastest",
    "tape-gather",
    "manual-gather",
    "fit-fastest-gather",
)  # keras_bp.speed.profiling.TRAINERS
# One epoch's full batches: every trainer sees the same batches, and none a partial one.
MAX_STEPS = SHAPES["x_train"][0] // FitConfig().batch_size


def trainer_list(text):
    """An argparse type: comma-separated names from `TRAINERS`, each once."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in TRAINERS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected names from {','.join(TRAINERS)}, each once, received {text!r}"
        )
    return names


def main():
    # Setup: bad input fails in one line, before TensorFlow starts.
    parser = cli.Parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trainers",
        type=trainer_list,
        default=list(TRAINERS),
        help=f"comma-separated, from {','.join(TRAINERS)} (default: all)",
    )
    parser.add_argument(
        "--steps",
        type=cli.positive_int,
        default=MAX_STEPS,
        help=f"training steps profiled, at most {MAX_STEPS} (default: %(default)s, one epoch)",
    )
    parser.add_argument(
        "--top", type=cli.positive_int, default=20, help="ops in each table (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/profile"), help="default: %(default)s"
    )
    cli.add_verbose(parser)
    args = parser.parse_args()
    if args.steps > MAX_STEPS:
        cli.fail(
            f"argument --steps: expected at most {MAX_STEPS} (one epoch), received {args.steps}"
        )
    cli.check_out_dir(args.out)
    cli.start_tensorflow(args.verbose)
    from keras_bp.data import mnist_arrays
    from keras_bp.runtime import atomic
    from keras_bp.speed import bench, op_times, profiling
    from keras_bp.training import runs

    # Data: MNIST after the tutorial's preprocessing.
    data = mnist_arrays()
    cpu = bench.cpu_description()

    # Profile: each trainer warmed up, timed, then run again under the profiler.
    profiles = {}
    for trainer in args.trainers:
        profile = profiling.profile_trainer(trainer, data, args.steps, args.out / trainer)
        profiles[trainer] = profile
        print(f"\n{op_times.headline(profile, cpu)}\n\n{op_times.table(profile, args.top)}")

    # Report: every row of every trainer, not only the top ones.
    path = args.out / "profile.json"
    atomic.write_json(
        path,
        {"steps": args.steps, "cpu": cpu, "profiles": profiles, "versions": runs.versions()},
    )
    print(f"\nwrote {path}; traces under {args.out}/<trainer>")


if __name__ == "__main__":
    cli.run(main)
