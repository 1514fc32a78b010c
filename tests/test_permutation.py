"""One permuted copy per epoch (`compiled.epoch_input`) instead of a gather per step: the same
batches, so the same weights bit for bit, in the compiled steps (both gradient sources, with and
without XLA, on one device and on replicas), the loop and `fit`'s input."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_synthetic_data, run_script

from keras_bp.config import LoopConfig, Speed
from keras_bp.data.batches import epoch_chunks, epoch_permutation, first_row
from keras_bp.gradients import make_source
from keras_bp.training.compiled import CompiledSteps, epoch_input
from keras_bp.training.fit_input import EpochOrder
from keras_bp.training.loop import train_loop

(X_TRAIN, Y_TRAIN), _ = make_synthetic_data()  # 256 rows
SEED, BATCH = 3, 16


def _chunks(order, steps_per_call=3, batch=BATCH):
    return [indices for _, indices in epoch_chunks(order, batch, 0, steps_per_call)]


def _weights(source):
    return [v.numpy() for v in [*source.variables, *source.optimizer_variables]]


def _assert_bitwise_equal(a, b):
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)  # exactness is the point: the same rows, same order


def test_first_row_recognises_consecutive_rows_only():
    assert first_row(np.arange(40, 88).reshape(3, 16)) == 40
    assert first_row(np.array([[7]])) == 7
    assert first_row(np.array([[0, 1], [3, 4]])) is None  # a gap between the batches
    assert first_row(np.array([[1, 0]])) is None  # out of order
    assert first_row(epoch_permutation(0, 0, 48).reshape(3, 16)) is None
    assert first_row(np.zeros((0, 16), np.int32)) is None


def test_epoch_input_is_the_epochs_order_gathered_once():
    x, y = tf.constant(X_TRAIN), tf.constant(Y_TRAIN)
    perm = epoch_permutation(SEED, 1, len(X_TRAIN))
    xs, ys, order = epoch_input(x, y, perm)
    np.testing.assert_array_equal(xs, X_TRAIN[perm])
    np.testing.assert_array_equal(ys, Y_TRAIN[perm])
    np.testing.assert_array_equal(order, np.arange(len(X_TRAIN)))
    # Batch i of the copy in order is batch i of the permutation: the same rows.
    for mine, theirs in zip(_chunks(order), _chunks(perm), strict=True):
        np.testing.assert_array_equal(np.asarray(xs)[mine], X_TRAIN[theirs])
    same_x, same_y, same_order = epoch_input(x, y, perm, copy=False)
    assert same_x is x and same_y is y and same_order is perm


def _op_types(function, *signature_args):
    graph = function.get_concrete_function(*signature_args).graph.as_graph_def()
    return [n.op for n in [*graph.node, *(n for f in graph.library.function for n in f.node_def)]]


def test_the_sliced_steps_gather_nothing():
    """The slicing graph reads each batch with Slice, the gathering graph with GatherV2: a
    regression to a gather per step would show here."""
    steps = CompiledSteps(make_source("manual", seed=0), 784, 10)
    sliced, gathered = _op_types(steps.rows_graph), _op_types(steps.graph)
    assert "GatherV2" not in sliced and sliced.count("Slice") == 2
    assert gathered.count("GatherV2") == 2


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_slices_of_the_copy_train_as_gathers_do_bit_for_bit(kind):
    """Every chunk of one epoch, the last one partial (256 = 15·16 + 16 → chunks of 3 steps and
    a 1-step one; with batch 24, a partial batch of 16), through both graphs."""
    x, y = tf.constant(X_TRAIN), tf.constant(Y_TRAIN)
    perm = epoch_permutation(SEED, 0, len(X_TRAIN))
    results = {}
    for copy in (True, False):
        source = make_source(kind, seed=SEED)
        steps = CompiledSteps(source, 784, 10)
        xs, ys, order = epoch_input(x, y, perm, copy)
        outputs = [[t.numpy() for t in steps.run(xs, ys, c)] for c in _chunks(order, batch=24)]
        traced = (steps.rows_graph if copy else steps.graph).experimental_get_tracing_count()
        assert steps.traces == traced == 1, copy  # each path its own graph, full and partial
        results[copy] = (outputs, _weights(source))
    (outputs, weights), (outputs_gathered, weights_gathered) = results[True], results[False]
    for (losses, correct), (losses_g, correct_g) in zip(outputs, outputs_gathered, strict=True):
        np.testing.assert_array_equal(losses, losses_g)
        np.testing.assert_array_equal(correct, correct_g)
    _assert_bitwise_equal(weights, weights_gathered)
    initial = _weights(make_source(kind, seed=SEED))
    assert max(np.abs(w - w0).max() for w, w0 in zip(weights, initial, strict=True)) > 1e-4


@pytest.mark.slow  # two XLA compiles: about 5 s
def test_slices_under_xla_train_as_padded_gathers_do_bit_for_bit():
    """XLA: a full chunk, a short one (2 of 3 steps, in arrays of 3), then the partial batch
    without XLA."""
    x, y = tf.constant(X_TRAIN[:88]), tf.constant(Y_TRAIN[:88])  # 5·16 + 8
    perm = epoch_permutation(SEED, 0, 88)
    results = {}
    for copy in (True, False):
        source = make_source("manual", seed=SEED)
        steps = CompiledSteps(source, 784, 10, xla=True, chunk_shape=(3, BATCH))
        xs, ys, order = epoch_input(x, y, perm, copy)
        losses = [steps.run(xs, ys, c)[0].numpy() for c in _chunks(order)]
        assert [len(part) for part in losses] == [3, 2, 1]
        assert steps.traces == 2  # one XLA graph for the full batches, one for the partial
        results[copy] = (np.concatenate(losses), _weights(source))
    np.testing.assert_array_equal(results[True][0], results[False][0])
    _assert_bitwise_equal(results[True][1], results[False][1])


def test_the_loop_with_and_without_the_copy_ends_with_the_same_weights(tmp_path):
    """Two epochs (two permutations), chunks of 3 steps, a partial final batch of 16."""
    data = make_synthetic_data()
    weights = []
    for copy in (True, False):
        config = LoopConfig(
            gradients="manual",
            epochs=2,
            batch_size=24,
            seed=SEED,
            out=tmp_path / str(copy),
            speed=Speed(3, fused=True),
            checkpoint_every=0,
        )
        model, metrics = train_loop(config, data, verbose=0, epoch_copy=copy)
        weights.append((model.get_weights(), metrics["history"]["loss"]))
    _assert_bitwise_equal(weights[0][0], weights[1][0])
    assert weights[0][1] == weights[1][1]  # the per-epoch losses, exactly


def test_fit_input_slices_the_batches_it_gathered_before():
    order, gathered = (EpochOrder(X_TRAIN, Y_TRAIN, 24, SEED, copy) for copy in (True, False))
    for epoch in (0, 1):
        order.on_epoch_begin(epoch)
        gathered.on_epoch_begin(epoch)
        pairs = list(zip(order.dataset, gathered.dataset, strict=True))
        assert len(pairs) == 11  # 10 batches of 24, one of 16
        for (x, y), (xg, yg) in pairs:
            np.testing.assert_array_equal(x, xg)
            np.testing.assert_array_equal(y, yg)
        indices = epoch_permutation(SEED, epoch, len(X_TRAIN))[:24]
        np.testing.assert_array_equal(pairs[0][0][0], X_TRAIN[indices])


# Two mirrored replicas need a fresh interpreter (devices are fixed at TensorFlow's first op).
MIRRORED = r"""
import json
import sys
import numpy as np
from keras_bp.config import LoopConfig
from keras_bp.training.distribute import DistributedSteps, strategy_for
strategy = strategy_for(LoopConfig(strategy="mirrored", replicas=2))
import tensorflow as tf
from keras_bp.data import mnist_arrays
from keras_bp.data.batches import epoch_chunks, epoch_permutation
from keras_bp.gradients import make_source
from keras_bp.training.compiled import epoch_input

(x_train, y_train), _ = mnist_arrays(train_samples=4 * 128 + 97)  # 97 rows split 48/49
x, y = tf.constant(x_train), tf.constant(y_train)
perm = epoch_permutation(0, 0, len(x_train))
out = {}
for kind in ("tape", "manual"):
    for copy in (True, False):
        with strategy.scope():
            source = make_source(kind, seed=0)
        steps = DistributedSteps(source, strategy, 784, 10, batch_size=128)
        xs, ys, order = epoch_input(x, y, perm, copy)
        losses = [
            float(v) for _, c in epoch_chunks(order, 128, 0, 3) for v in steps.run(xs, ys, c)[0]
        ]
        state = [*source.variables, *source.optimizer_variables]
        out[f"{kind} {copy}"] = {
            "losses": losses,
            "weights": [np.asarray(v).tobytes().hex() for v in state],
            "traces": steps.traces,
            "graph": "rows" if steps.rows_graph.experimental_get_tracing_count() else "gather",
        }
print(json.dumps(out))
"""


@pytest.mark.slow
def test_two_mirrored_replicas_slice_as_they_gathered_bit_for_bit(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    process = run_script(str(script))
    assert process.returncode == 0, process.stderr[-2000:]
    result = json.loads(process.stdout.splitlines()[-1])
    for kind in ("tape", "manual"):
        sliced, gathered = result[f"{kind} True"], result[f"{kind} False"]
        assert (sliced["graph"], gathered["graph"]) == ("rows", "gather"), kind
        assert sliced["traces"] == gathered["traces"] == 1, kind
        assert len(sliced["losses"]) == 5, kind
        assert sliced["losses"] == gathered["losses"], kind
        assert sliced["weights"] == gathered["weights"], kind
