"""The reproduction report: the whole pipeline on a small real subset, its reuse of finished runs,
its bad input, and (slow) the default report's accuracy claim."""

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_main, run_script
from matplotlib import image

from keras_bp import cli
from keras_bp.config import LoopConfig
from keras_bp.report import backend_runs, document, seeds
from keras_bp.report.published import PUBLISHED

FIGURES = {
    "learning_curves.png",
    "accuracy_per_seed.png",
    "parity_over_steps.png",
    "gradcheck_errors.png",
    "overfitting.png",
}


def check_figure(path):
    pixels = image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300, path
    assert pixels[..., :3].std() > 0.01, f"{path} is blank"


@pytest.mark.slow  # fast: document.build's statistics and markdown below, test_figures.py
def test_the_report_pipeline_on_a_small_real_subset(tmp_path):
    """`main()` in this process: its TensorFlow is already started. test_bad_input_… below runs
    the script as a process. On TensorFlow alone: tests/test_backends_report.py adds JAX and
    PyTorch."""
    out, docs = tmp_path / "report", tmp_path / "docs"
    result = run_main(
        "report.py",
        *("--seeds", "1", "--epochs", "1", "--train-samples", "1500", "--backends", "tensorflow"),
        *("--overfit-epochs", "3", "--parity-steps", "4"),
        *("--bench", tmp_path / "no-bench.json", "--out", out, "--docs", docs),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[4/4] fit --keras-shuffle, seed 0" in result.stdout  # progress names each run

    numbers = json.loads((out / "report.json").read_text())
    assert set(numbers["trainers"]) == set(seeds.TRAINERS)
    for label, trainer in numbers["trainers"].items():
        for seed, run in zip([0], trainer["runs"], strict=True):
            metrics = json.loads((seeds.run_dir(out, label, seed) / "metrics.json").read_text())
            assert run["seed"] == metrics["seed"] == seed
            assert run["test_accuracy"] == metrics["test_accuracy"]
            assert run["history"] == metrics["history"]
            assert len(metrics["history"]["test_accuracy"]) == 1  # evaluated after the epoch
        accuracies = [r["test_accuracy"] for r in trainer["runs"]]
        assert trainer["test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies), abs=1e-12)
    assert numbers["published"]["test_accuracy"] == PUBLISHED.test_accuracy
    assert numbers["speed"] is None  # no bench run to read
    assert numbers["overfitting"]["epochs"] == 3
    assert set(numbers["parity"]) == set(seeds.PARITY_SPEEDS)
    assert numbers["settings"]["backends"] == ["tensorflow"]
    assert numbers["backend_parity"] is None
    assert {t["backend"] for t in numbers["trainers"].values()} == {"tensorflow"}

    text = (out / "report.md").read_text()
    fit = numbers["trainers"]["fit"]["test_accuracy"]
    assert f"{fit['mean']:.4f}" in text and "Welch" in text and "run `make bench` first" in text
    # One seed: no spread, so no interval (the statistics over seeds: the next test).
    assert fit["std"] is None and fit["ci_low"] is None
    embedded = {
        line[line.index("(") + 1 : -1] for line in text.splitlines() if line.startswith("![")
    }
    assert embedded == FIGURES  # every figure drawn, and only those
    assert {p.name for p in out.glob("*.png")} == FIGURES  # no speed figure without a bench
    for name in FIGURES:
        check_figure(out / name)
        assert (docs / name).read_bytes() == (out / name).read_bytes()
    assert (docs / "report.md").read_text() == text


def made_up_results(accuracies):
    """`{label: [metrics of each seed]}`, as `seeds.train_all` returns them, for made-up test
    accuracies; a label's backend is the one its name gives (`fit --backend jax`: jax)."""
    history = {"loss": [0.3], "test_accuracy": [0.97]}
    return {
        label: [
            {
                "seed": seed,
                "backend": label.split("--backend ")[-1] if "--backend" in label else "tensorflow",
                "test_accuracy": accuracy,
                "test_loss": 1 - accuracy,
                "train_seconds": 1.0,
                "history": history,
            }
            for seed, accuracy in enumerate(values)
        ]
        for label, values in accuracies.items()
    }


SETTINGS = {
    "seeds": [0, 1, 2],
    "epochs": 1,
    "train_samples": 1500,
    "seconds": 60.0,
    "reused_runs": 0,
    "backends": ["tensorflow"],
}
MACHINE = {"cpu": "Test CPU", "versions": {}}


def test_the_document_gives_each_trainers_spread_and_the_differences_over_seeds():
    """`document.build` and `markdown` on three seeds of every trainer, made up: the pipeline
    above trains one seed, which has no spread; this is what more seeds add."""
    results = made_up_results(
        {
            "fit": [0.970, 0.980, 0.975],
            "tape": [0.971, 0.979, 0.976],
            "manual": [0.950, 0.952, 0.951],
            "fit --keras-shuffle": [0.976, 0.978, 0.977],
        }
    )
    numbers = document.build(results, SETTINGS, MACHINE, None, None, None, None)
    fit = numbers["trainers"]["fit"]["test_accuracy"]
    assert (fit["n"], fit["mean"]) == (3, pytest.approx(0.975, abs=1e-12))
    assert fit["std"] == pytest.approx(0.005, rel=1e-9)
    assert fit["ci_low"] < 0.975 < fit["ci_high"]
    assert numbers["trainers"]["fit"]["contains_published"] is True  # 0.9777 in [0.963, 0.987]
    assert numbers["trainers"]["manual"]["contains_published"] is False
    welch = {(d["a"], d["b"]): d for d in numbers["differences"] if d["metric"] == "test_accuracy"}
    assert welch[("fit", "manual")]["p_value"] < 0.05  # 0.024 apart; measured p = 0.012
    assert welch[("fit", "tape")]["p_value"] > 0.5
    text = document.markdown(numbers, [])
    assert f"{fit['ci_low']:.4f} – {fit['ci_high']:.4f}" in text
    assert f"{welch[('fit', 'manual')]['difference']:+.4f}" in text
    assert "Each trainer ran 3 seeds (0–2)" in text
    assert "another of Keras's backends" not in text  # TensorFlow alone: no backends paragraph


def test_the_document_gives_a_row_per_backend_and_their_differences():
    """Made up: `fit` on three backends over three seeds, and its parity across them sampled
    after steps 1, 2, 3, 5 and 10 (`seeds.backend_parity_curves` keeps some steps only)."""
    results = made_up_results(
        {
            "fit": [0.970, 0.980, 0.975],
            "fit --backend jax": [0.971, 0.981, 0.976],
            "fit --backend torch": [0.990, 0.991, 0.992],
        }
    )
    across = {
        "trainer": "fit",
        "steps": [1, 2, 3, 5, 10],
        "curves": {
            "tensorflow vs jax": [1e-8, 2e-8, 2e-8, 3e-8, 4e-8],
            "tensorflow vs torch": [1e-8, 2e-8, 5e-6, 1e-5, 1e-3],
            "jax vs torch": [0.0, 0.0, 0.0, 0.0, 0.0],
        },
    }
    settings = {**SETTINGS, "backends": ["tensorflow", "jax", "torch"]}
    numbers = document.build(results, settings, MACHINE, None, None, None, None, across)

    trainers = numbers["trainers"]
    assert [trainers[k]["backend"] for k in results] == ["tensorflow", "jax", "torch"]
    jax = trainers["fit --backend jax"]["test_accuracy"]
    assert (jax["n"], jax["mean"]) == (3, pytest.approx(0.976, abs=1e-12))
    assert jax["ci_low"] < PUBLISHED.test_accuracy < jax["ci_high"]
    assert trainers["fit --backend jax"]["contains_published"] is True
    assert trainers["fit --backend torch"]["contains_published"] is False  # 0.989 to 0.993
    welch = {(d["a"], d["b"]): d for d in numbers["differences"] if d["metric"] == "test_accuracy"}
    assert set(welch) == {
        ("fit", "fit --backend jax"),
        ("fit", "fit --backend torch"),
        ("fit --backend jax", "fit --backend torch"),
    }
    assert welch[("fit", "fit --backend jax")]["difference"] == pytest.approx(-0.001, abs=1e-12)
    assert welch[("fit", "fit --backend jax")]["p_value"] > 0.5
    assert welch[("fit --backend jax", "fit --backend torch")]["p_value"] < 0.05
    marks = numbers["backend_parity"]["marks"]
    assert marks["tensorflow vs torch"]["first_step_above_1e-6"] == 3
    assert marks["tensorflow vs torch"]["step_10"] == 1e-3
    assert (marks["tensorflow vs jax"]["last_step"], marks["tensorflow vs jax"]["last"]) == (
        10,
        4e-8,
    )
    assert marks["jax vs torch"]["first_step_above_1e-6"] is None

    text = document.markdown(numbers, [])
    assert "| `fit --backend jax` | jax | 3 | 0.9760 |" in text
    assert "| `fit --backend torch` | torch | 3 | 0.9910 |" in text
    assert "| `fit` | tensorflow | 3 | 0.9750 |" in text
    d = welch[("fit --backend jax", "fit --backend torch")]
    assert (
        f"| `fit --backend jax` − `fit --backend torch` | test accuracy | {d['difference']:+.4f}"
        in text
    )
    assert "`fit --backend jax` and `fit --backend torch` are the recipe on another" in text
    assert "## Parity across backends" in text
    assert "after steps 1–3, then every 5th, and after step 10" in text
    assert "| tensorflow vs torch | 1.0e-08 | 1.0e-03 | – | 1.0e-03 (step 10) | 3 |" in text


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    config = replace(seeds.TRAINERS["tape"], epochs=1, seed=3, out=tmp_path)
    metrics = {
        "trainer": "tape",
        "backend": "tensorflow",
        "epochs": 1,
        "seed": 3,
        "train_samples": 1500,
        "early_stopping": None,
        "shuffle": "per-epoch",
        "speed": {"steps_per_call": 52, "xla": False, "fused": False},  # the recipe's update
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert seeds.finished(tmp_path, config, 1500) == metrics
    shipped = replace(config, speed=LoopConfig().speed)  # RMSprop fused: another computation
    assert seeds.finished(tmp_path, shipped, 1500) is None
    assert seeds.finished(tmp_path, config, 3000) is None  # other data
    assert seeds.finished(tmp_path, replace(config, epochs=2), 1500) is None
    assert seeds.finished(tmp_path, replace(config, seed=4), 1500) is None
    fit = replace(seeds.TRAINERS["fit --keras-shuffle"], epochs=1, seed=3, out=tmp_path)
    assert seeds.finished(tmp_path, fit, 1500) is None  # another trainer
    (tmp_path / "metrics.json").write_text("{trunc")
    assert seeds.finished(tmp_path, config, 1500) is None


def test_a_finished_run_is_reused_only_on_its_backend(tmp_path):
    on_jax = backend_runs.fit_configs(["tensorflow", "jax"])["fit --backend jax"]
    config = replace(on_jax, epochs=1, seed=3, out=tmp_path)
    metrics = {
        "trainer": "fit",
        "backend": "jax",
        "epochs": 1,
        "seed": 3,
        "train_samples": 1500,
        "early_stopping": None,
        "shuffle": "per-epoch",
        "speed": {"steps_per_call": 1, "xla": False, "fused": False},  # fit as published
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert seeds.finished(tmp_path, config, 1500) == metrics
    assert seeds.finished(tmp_path, replace(config, backend="torch"), 1500) is None
    assert seeds.finished(tmp_path, replace(config, backend="tensorflow"), 1500) is None


def test_a_finished_run_with_early_stopping_is_reused_for_the_same_patience(tmp_path):
    config = replace(seeds.TRAINERS["tape"], epochs=30, early_stopping=30, out=tmp_path)
    metrics = {
        "trainer": "tape",
        "backend": "tensorflow",
        "epochs": 30,
        "seed": 0,
        "train_samples": 60000,
        "early_stopping": {"patience": 30, "best_epoch": 5, "stopped_epoch": None},
        "shuffle": "per-epoch",
        "speed": {"steps_per_call": 52, "xla": False, "fused": False},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert seeds.finished(tmp_path, config, 60000) == metrics
    assert seeds.finished(tmp_path, replace(config, early_stopping=3), 60000) is None
    assert seeds.finished(tmp_path, replace(config, early_stopping=None), 60000) is None


def test_seeds_are_a_count_or_a_range():
    assert cli.seed_list("5") == [0, 1, 2, 3, 4]
    assert cli.seed_list("3-7") == [3, 4, 5, 6, 7]
    for bad in ["0", "7-3", "x", "-1", "1-2-3"]:
        with pytest.raises(argparse.ArgumentTypeError, match="expected a count"):
            cli.seed_list(bad)


def test_each_run_has_a_directory_named_by_its_label_and_seed(tmp_path):
    assert seeds.run_dir(tmp_path, "fit --keras-shuffle", 0).name == "fit-keras-shuffle-seed0"
    assert seeds.run_dir(tmp_path, "fit --backend jax", 3).name == "fit-backend-jax-seed3"
    assert seeds.run_dir(tmp_path, "manual", 1) == tmp_path / "runs" / "manual-seed1"


@pytest.mark.parametrize(
    "args",
    [
        ["--seeds", "7-3"],
        ["--epochs", "0"],
        ["--parity-steps", "-1"],
        ["--backends", "tensorflow,numpy"],
        ["--backends", "jax,jax"],
        ["--backends", "jax,torch"],  # the report's other trainers run on tensorflow
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args):
    result = run_script("scripts/report.py", *args, "--out", tmp_path / "r")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_default_report_reproduces_the_published_accuracy(tmp_path):
    """Five seeds of every TensorFlow trainer, 5 epochs on all of MNIST: fit's mean lies in
    0.975–0.985. `make report` adds JAX and PyTorch (docs/report/)."""
    out = tmp_path / "report"
    result = run_script("scripts/report.py", "--backends", "tensorflow", "--out", out, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads((out / "report.json").read_text())
    for label in ["fit", "tape", "manual"]:
        summary = numbers["trainers"][label]["test_accuracy"]
        assert summary["n"] == 5
        assert 0.975 <= summary["mean"] <= 0.985, (label, summary)
    for name in FIGURES:
        check_figure(out / name)
    for seed in range(5):  # the same batches in the same order, the same graph: the same bits
        fit, tape = (
            json.loads((seeds.run_dir(out, label, seed) / "metrics.json").read_text())
            for label in ("fit", "tape")
        )
        assert fit["weights_sha256"] == tape["weights_sha256"], seed


def test_the_speed_rows_read_floors_first_then_each_trainer_shipped_first(tmp_path):
    names = [
        "manual loop: --xla",
        "tape loop: --no-fused",
        "fit: --steps-per-execution 32 --fused",
        "matmul floor, XLA",
        "training floor, XLA",
        "manual loop: make manual",
        "fit: make train (the recipe as is)",
        "tape loop: make custom-loop",
    ]
    rows = {name: {"x_matmul_floor": 2.0, "x_training_floor": 1.5} for name in names}
    (tmp_path / "bench.json").write_text(json.dumps({"machine": "Test CPU", "rows": rows}))
    speed = seeds.speed_rows(tmp_path / "bench.json")
    assert [name for name, _, _ in speed["rows"]] == [
        "training floor, XLA",
        "fit: make train (the recipe as is)",
        "fit: --steps-per-execution 32 --fused",
        "tape loop: make custom-loop",
        "tape loop: --no-fused",
        "manual loop: make manual",
        "manual loop: --xla",
    ]
    assert seeds.speed_rows(tmp_path / "missing.json") is None
