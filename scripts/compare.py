"""Train the tutorial's model three ways with one random seed, and tabulate how they compare.

    python scripts/compare.py [--epochs 5] [--seed 0] [--fused] [--out runs/compare] [...]

The three trainers: `model.fit` (the recipe `make train` runs), the `tf.GradientTape` loop and
the hand-written-gradient loop. All start from the same initial weights. Each writes its run
into `--out/<trainer>/`; the table goes to `--out/compare.md` and to the screen. It takes
`scripts/train.py`'s options; the loops take the same ones, with their own steps per call.
"""

from dataclasses import fields, replace

from keras_bp import cli
from keras_bp.config import DEFAULT_OUT, LOOP_SPEED, LoopConfig, TrainConfig


def main():
    # Setup: one set of options for all three trainers; each writes into --out/<trainer>/.
    parser = cli.train_parser(__doc__.splitlines()[0], "fit", out=DEFAULT_OUT["compare"])
    args = parser.parse_args()
    fit_config = cli.config_from_args(args, "fit")
    out = cli.check_out_dir(fit_config.out)  # bad input fails fast, before TensorFlow starts
    cli.start_tensorflow(args.verbose)
    from keras_bp import data
    from keras_bp.runtime import atomic
    from keras_bp.runtime.runlock import RunLock
    from keras_bp.training import loop, recipe, reproducible, runs

    settings = reproducible.configure(fit_config.seed, fit_config.deterministic)

    # Data.
    mnist = data.mnist_arrays(fit_config.train_samples)

    # Hold --out for the whole comparison: a second one into it is refused at once.
    with RunLock(out):
        # Train: model.fit, then the loop with each gradient source, from the same initial weights.
        shared = {f.name: getattr(fit_config, f.name) for f in fields(TrainConfig)}
        _, fit_metrics = recipe.train_fit(
            replace(fit_config, out=out / "fit"), mnist, verbose=2, extra_metrics=settings
        )
        results = [fit_metrics]
        for kind in ["tape", "manual"]:
            config = LoopConfig(
                **{
                    **shared,
                    "out": out / kind,
                    "speed": replace(
                        LOOP_SPEED, fused=fit_config.speed.fused, xla=fit_config.speed.xla
                    ),
                },
                gradients=kind,
            )
            results.append(loop.train_loop(config, mnist, verbose=2, extra_metrics=settings)[1])

        # Report.
        table = runs.markdown_table(
            ["trainer", "test accuracy", "test loss", "training seconds"],
            [
                (
                    m["trainer"],
                    f"{m['test_accuracy']:.4f}",
                    f"{m['test_loss']:.4f}",
                    f"{m['train_seconds']:.1f}",
                )
                for m in results
            ],
        )
        header = (
            f"{fit_config.epochs} epochs, batch {fit_config.batch_size}, seed {fit_config.seed}, "
            f"{results[0]['train_samples']} training images; TensorFlow "
            f"{results[0]['versions']['tensorflow']}, Keras {results[0]['versions']['keras']}"
            + ("; RMSprop fused (--fused)" if fit_config.speed.fused else "")
        )
        report = f"{header}\n\n{table}\n"
        atomic.write_bytes(out / "compare.md", report.encode())
        print(report)
        print(f"wrote {out / 'compare.md'}")


if __name__ == "__main__":
    cli.run(main)
