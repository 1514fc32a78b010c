"""Configuration: each default defined once, validated on construction, and the CLI owns none."""

import argparse
import inspect
from pathlib import Path

import keras
import pytest

from keras_bp import cli, optimizers
from keras_bp.config import (
    DEFAULT_LEARNING_RATES,
    FIT_SPEED,
    LOOP_SPEED,
    FitConfig,
    LoopConfig,
    Speed,
    TrainConfig,
    steps_per_epoch,
)


def test_the_fit_defaults_are_the_recipe_as_published():
    config = FitConfig()
    assert (config.epochs, config.batch_size, config.optimizer) == (5, 128, "rmsprop")
    assert config.resolved_learning_rate == 1e-3 and config.speed == Speed(steps_per_call=1)
    assert str(config.out) == "runs/fit"


def test_the_loop_defaults_differ_only_in_how_they_run():
    tape, manual = LoopConfig(), LoopConfig(gradients="manual")
    assert tape.speed == LOOP_SPEED == Speed(steps_per_call=52, fused=True) != FIT_SPEED
    assert (str(tape.out), str(manual.out)) == ("runs/custom_loop", "runs/manual")
    assert (tape.trainer, manual.trainer, FitConfig.trainer) == ("tape", "manual", "fit")
    assert (tape.epochs, tape.batch_size, tape.seed) == (FitConfig().epochs, 128, 0)


def test_default_learning_rates_are_kerass_and_the_hand_written_optimizers():
    keras_defaults = {
        "rmsprop": keras.optimizers.RMSprop().get_config()["learning_rate"],
        "sgd": keras.optimizers.SGD().get_config()["learning_rate"],
    }
    hand_written = {
        name: inspect.signature(cls).parameters["learning_rate"].default
        for name, cls in optimizers.OPTIMIZERS.items()
    }
    assert pytest.approx(keras_defaults) == DEFAULT_LEARNING_RATES == hand_written


def test_steps_per_epoch_counts_the_partial_batch():
    assert steps_per_epoch(60000, 128) == 469  # 468 full batches and one of 96
    assert steps_per_epoch(256, 32) == 8


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FitConfig(epochs=0), "epochs: expected a positive integer, received 0"),
        (lambda: FitConfig(batch_size=True), "batch_size: expected a positive integer"),
        (lambda: FitConfig(seed=-1), "seed: expected an integer >= 0, received -1"),
        (lambda: FitConfig(train_samples=0), "train_samples: expected a positive integer"),
        (lambda: FitConfig(optimizer="adam"), "optimizer: expected one of ('rmsprop', 'sgd')"),
        (lambda: FitConfig(learning_rate=float("nan")), "learning_rate: expected a finite"),
        (lambda: Speed(steps_per_call=0), "steps_per_call: expected a positive integer"),
        (lambda: LoopConfig(gradients="jax"), "gradients: expected one of ('tape', 'manual')"),
        (lambda: LoopConfig(checkpoint_every=-1), "checkpoint_every: expected an integer >= 0"),
        (lambda: FitConfig(early_stopping=0), "early_stopping: expected a positive integer"),
        (lambda: LoopConfig(early_stopping=True), "early_stopping: expected a positive integer"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(make, message):
    with pytest.raises(ValueError) as refused:
        make()
    assert message in str(refused.value)


def test_fused_applies_to_rmsprop_only():
    # The loops fuse RMSprop's update by default; SGD runs as written, from Python or the CLI.
    assert LoopConfig(optimizer="sgd").speed == Speed(steps_per_call=52, fused=False)
    assert LoopConfig(optimizer="sgd", speed=Speed(fused=True)).speed.fused is False
    args = cli.train_parser("t", "manual").parse_args(["--optimizer", "sgd"])
    assert cli.config_from_args(args, "manual").speed.fused is False
    args = cli.train_parser("t", "manual").parse_args(["--no-fused"])
    assert cli.config_from_args(args, "manual").speed == Speed(steps_per_call=52, fused=False)


def test_the_shared_base_is_not_a_trainer():
    with pytest.raises(TypeError, match="use FitConfig or LoopConfig"):
        TrainConfig()


@pytest.mark.parametrize("trainer", ["fit", "tape", "manual"])
def test_the_cli_owns_no_default(trainer):
    parser = cli.train_parser("test", trainer)
    options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert all(a.default in (None, False) for a in options)
    config = cli.config_from_args(parser.parse_args([]), trainer)
    expected = FitConfig() if trainer == "fit" else LoopConfig(gradients=trainer)
    assert config == expected


def test_options_become_config_fields_and_speed():
    parser = cli.train_parser("test", "manual")
    args = parser.parse_args(
        ["--epochs", "2", "--optimizer", "sgd", "--learning-rate", "0.1", "--xla"]
        + ["--steps-per-call", "8", "--checkpoint-every", "0", "--out", "elsewhere"]
    )
    config = cli.config_from_args(args, "manual")
    assert config == LoopConfig(
        gradients="manual",
        epochs=2,
        optimizer="sgd",
        learning_rate=0.1,
        checkpoint_every=0,
        out="elsewhere",
        speed=Speed(steps_per_call=8, xla=True, fused=False),
    )
    fit = cli.config_from_args(
        cli.train_parser("t", "fit").parse_args(["--steps-per-execution", "32", "--fused"]), "fit"
    )
    assert fit.speed == Speed(steps_per_call=32, fused=True)


def test_help_shows_the_configs_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.train_parser("test", "tape").parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for text in ["default: 5", "default: 128", "(default: runs/custom_loop)", "(default: 52)"]:
        assert text in help_text


def test_every_option_of_the_parity_tool_says_its_default():
    from conftest import run_script

    proc = run_script("scripts/parity.py", "--help")
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    for text in [
        "--steps STEPS training steps (default: 100)",
        "--batch-size BATCH_SIZE default: 128",
        "--seed SEED default: 0",
        "--tolerance TOLERANCE largest weight difference that passes (default: 0.0001)",
    ]:
        assert text in help_text


def test_early_stopping_tensorboard_and_keras_shuffle_become_config_fields():
    args = ["--early-stopping", "3", "--tensorboard", "tb", "--keras-shuffle"]
    fit = cli.config_from_args(cli.train_parser("t", "fit").parse_args(args), "fit")
    assert fit == FitConfig(early_stopping=3, tensorboard=Path("tb"), keras_shuffle=True)
    loop = cli.config_from_args(cli.train_parser("t", "tape").parse_args(args[:4]), "tape")
    assert loop == LoopConfig(early_stopping=3, tensorboard=Path("tb"))


def test_keras_shuffle_is_an_option_of_fit_only(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.train_parser("t", "tape").parse_args(["--keras-shuffle"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(": error: unrecognized arguments: --keras-shuffle\n")
    assert err.count("\n") == 1


@pytest.mark.parametrize("patience", ["0", "-1", "two"])
def test_a_bad_patience_is_one_line_and_exit_code_2(patience, tmp_path):
    from conftest import run_script

    out = tmp_path / "run"
    proc = run_script("scripts/train.py", "--early-stopping", patience, "--out", out)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"train.py: error: argument --early-stopping: expected a positive integer, "
        f"received {patience if patience != 'two' else repr(patience)}"
    ]
    assert not out.exists()
