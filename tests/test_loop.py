"""The custom loop: shuffling, batching, tracing, metrics, parity with fit, no autodiff."""

import json
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_main, run_script

from keras_bp import gradients
from keras_bp.checks import parity
from keras_bp.config import LoopConfig, Speed
from keras_bp.data import preprocess
from keras_bp.data.batches import epoch_chunks, epoch_permutation
from keras_bp.training.compiled import CompiledSteps
from keras_bp.training.loop import train_loop
from keras_bp.training.runs import RUN_KEYS


def test_permutation_is_a_function_of_seed_and_epoch():
    a = epoch_permutation(0, 1, 1000)
    np.testing.assert_array_equal(a, epoch_permutation(0, 1, 1000))
    assert sorted(a.tolist()) == list(range(1000))
    assert not np.array_equal(a, epoch_permutation(0, 2, 1000))
    assert not np.array_equal(a, epoch_permutation(1, 1, 1000))


def test_chunks_cover_every_sample_once_with_a_final_partial_batch():
    perm = epoch_permutation(0, 0, 60000)
    chunks = list(epoch_chunks(perm, 128, 0, 52))
    assert [c.shape for _, c in chunks] == [(52, 128)] * 9 + [(1, 96)]  # 468 full steps, then 96
    np.testing.assert_array_equal(np.concatenate([c.ravel() for _, c in chunks]), perm)
    assert [first for first, _ in chunks][:3] == [0, 52, 104]
    # Resuming at step 230 yields exactly the remaining batches.
    resumed = list(epoch_chunks(perm, 128, 230, 50))
    assert resumed[0][0] == 230
    np.testing.assert_array_equal(
        np.concatenate([c.ravel() for _, c in resumed]), perm[230 * 128 :]
    )


@pytest.mark.parametrize(
    "kind, xla, traces",
    [
        ("tape", False, 1),  # full and partial chunks share one trace
        ("manual", False, 1),
        # One XLA graph for padded full chunks, one for the partial batch. Slow: XLA compiles
        # (fast, XLA's chunks: test_xla_chunks_padded_to_one_shape_train_as_unpadded_ones).
        pytest.param("manual", True, 2, marks=pytest.mark.slow),
    ],
)
def test_loop_traces_at_most_twice_and_writes_every_run_key(
    kind, xla, traces, tmp_path, synthetic_data
):
    speed = Speed(steps_per_call=2, xla=xla)
    config = LoopConfig(gradients=kind, epochs=2, batch_size=48, seed=1, out=tmp_path, speed=speed)
    # 256 = 5·48 + 16: chunks of 2, 2 and 1 full batches (the 1 padded to 2), then 16 alone.
    _, metrics = train_loop(config, synthetic_data, verbose=0)
    assert metrics["traces"] == traces
    assert metrics["speed"] == {"steps_per_call": 2, "xla": xla, "fused": False}
    assert metrics["trainer"] == kind and metrics["resumed_at"] is None
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert set(on_disk) == {*RUN_KEYS, "traces", "wall_seconds"}
    assert len(on_disk["history"]["loss"]) == 2
    assert on_disk["history"]["loss"][1] < on_disk["history"]["loss"][0]
    assert on_disk["train_seconds"] > 0


def test_fast_parity_of_the_three_trainers_on_real_digits(mnist):
    """24 steps of batch 32 on real MNIST: fit = tape bit for bit, manual within rounding.

    Real digits, not the synthetic set: the hand-written softmax gradient differs from
    TensorFlow's fused kernel in the last bit, and on the synthetic set (all 784 pixels random)
    one hidden unit of one image sits 1e-7 from the ReLU kink at step 4; there the last bit
    decides whether the unit passes a gradient, and RMSprop turns the difference into a full
    step (1.3e-3, measured on an AVX-512 CPU). The README's parity section explains it.
    """
    (x_train, y_train), _ = mnist
    x, y = preprocess(x_train[:2048], y_train[:2048])
    weights = parity.train_in_lockstep(x, y, 24, batch_size=32, seed=2, speed=Speed(8))
    rows, moved = parity.parity_table(weights)
    diffs = dict(rows)
    assert set(diffs) == {"fit vs tape", "fit vs manual", "tape vs manual"}
    assert diffs["fit vs tape"] == 0  # the same graph: bit-identical, on purpose
    assert max(diffs.values()) <= 1e-6
    assert moved > 1e-2  # training really moved the weights


def _op_list(source):
    """Every op in the compiled step's graph, the while-loop body included, by type."""
    graph_def = CompiledSteps(source, 784, 10).graph.get_concrete_function().graph.as_graph_def()
    nodes = [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]
    return [node.op for node in nodes]


def test_manual_step_does_exactly_the_five_matrix_products_of_training():
    # Forward x·W1 and h·W2; backward dW2 = hᵀ·dz2, dh = dz2·W2ᵀ, dW1 = xᵀ·dz1. Not dx = dz1·W1ᵀ:
    # the data's gradient is never used, and it is one of the first layer's three large products.
    ops = _op_list(gradients.make_source("manual", seed=0))
    assert ops.count("MatMul") == 5


def test_manual_trainer_graph_has_no_autodiff_ops_and_the_tape_graph_does():
    grad_ops = {"ReluGrad", "SoftmaxCrossEntropyWithLogits"}
    manual_ops = set(_op_list(gradients.make_source("manual", seed=0)))
    tape_ops = set(_op_list(gradients.make_source("tape", seed=0)))
    assert not manual_ops & grad_ops
    assert tape_ops & grad_ops  # the check can fail: autodiff leaves these in a graph
    assert "MatMul" in manual_ops


# Slow: a process of its own each; the fast suite's real-data smoke is make train's (test_recipe).
@pytest.mark.slow
@pytest.mark.parametrize("script", ["scripts/custom_loop.py", "scripts/manual_backprop.py"])
def test_loop_scripts_smoke_on_real_mnist(script, tmp_path):
    began = time.monotonic()
    proc = run_script(script, "--epochs", "1", "--train-samples", "2560", "--out", tmp_path)
    elapsed = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr[-2000:]
    accuracy = float(proc.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.75  # 20 steps on real digits
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_samples"] == 2560 and metrics["traces"] == 1
    # The last line splits the wall time: every phase of the run, from the process's start.
    phases = metrics["wall_seconds"]
    assert {"start", "data", "setup", "training", "evaluation", "checkpoints", "saving"} <= set(
        phases
    )
    assert all(seconds >= 0 for seconds in phases.values()) and phases["start"] > 0.5  # TF import
    # From the process's start to the model saved: most of what the test saw it take, never more
    # (/proc counts the start in 10 ms ticks; what is left is metrics.json, exit and pytest's side).
    assert 0.5 * elapsed < sum(phases.values()) < elapsed + 0.02
    assert proc.stdout.strip().splitlines()[-1].startswith("wall time ")


def test_manual_script_rejects_an_unknown_optimizer(tmp_path):
    proc = run_script("scripts/manual_backprop.py", "--optimizer", "adam", "--out", tmp_path)
    assert proc.returncode == 2
    assert "invalid choice: 'adam'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", ["scripts/custom_loop.py", "scripts/manual_backprop.py"])
def test_loop_trainers_reach_the_accuracy_bar(script, tmp_path):
    proc = run_script(script, "--out", tmp_path, "--fresh", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    print(f"{script}: test accuracy {metrics['test_accuracy']:.4f}, traces {metrics['traces']}")
    assert metrics["test_accuracy"] >= 0.975
    assert metrics["traces"] <= 2


@pytest.mark.slow
def test_parity_on_real_mnist_at_100_steps():
    proc = run_script("scripts/parity.py", "--steps", "100")
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "PASS" in proc.stdout


def test_xla_chunks_padded_to_one_shape_train_as_unpadded_ones(synthetic_data):
    """3 steps padded to a (4, 16) chunk: 3 losses, and the weights of 3 unpadded steps."""
    (x, y), _ = synthetic_data
    x, y = tf.constant(x), tf.constant(y)
    indices = epoch_permutation(0, 0, len(x))[:48].reshape(3, 16)
    results = {}
    for name, shape in [("padded", (4, 16)), ("exact", (3, 16))]:
        source = gradients.make_source("manual", seed=0)
        steps = CompiledSteps(source, 784, 10, xla=True, chunk_shape=shape)
        losses, _ = steps.run(x, y, indices)
        results[name] = losses.numpy(), [v.numpy() for v in source.variables]
    (padded_losses, padded_weights), (exact_losses, exact_weights) = results.values()
    assert padded_losses.shape == (3,)
    np.testing.assert_allclose(padded_losses, exact_losses, rtol=1e-6, atol=0)
    for a, b in zip(padded_weights, exact_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_a_chunk_longer_than_the_xla_shape_is_refused():
    steps = CompiledSteps(gradients.make_source("manual", seed=0), 784, 10, True, (2, 4))
    with pytest.raises(ValueError, match=r"a chunk of 3 steps exceeds chunk_shape \(2, 4\)"):
        steps.run(None, None, np.zeros((3, 4), np.int32))


@pytest.mark.heavy(3)
def test_parity_exits_1_when_a_pair_differs_by_more_than_the_tolerance():
    # In this process; the script's own exit code from a process: the --replicas test below.
    proc = run_main("parity.py", "--steps", "2", "--tolerance", "1e-30")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("FAIL: largest difference ")


@pytest.mark.slow  # the mirrored trainers in one process: test_distribute.py runs them fast
def test_parity_with_replicas_tabulates_each_trainer_against_one_device():
    """`--replicas 2`: each trainer on 2 mirrored replicas is within 1e-6 of itself on one
    device after one step."""
    proc = run_script("scripts/parity.py", "--steps", "2", "--replicas", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("2 replicas vs one device") :]
    for trainer in ["fit", "tape", "manual"]:
        row = next(line for line in table.splitlines() if line.startswith(f"| {trainer} |"))
        after_one_step = float(row.split("|")[2])
        assert after_one_step <= 1e-6, (trainer, after_one_step)


def test_a_command_called_from_python_returns_instead_of_exiting():
    # Only a process started for the script exits early; pytest here is such a caller.
    import tensorflow  # noqa: F401  (loaded, as after any command)

    from keras_bp import cli

    assert cli.run(lambda: 3) == 3
