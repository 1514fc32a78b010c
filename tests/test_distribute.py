"""Data-parallel training (`keras_bp.distribute`) holds to one device's, step for step.

Logical devices and a cluster's collectives can be set up only before TensorFlow runs its first
op, so each distributed run is a fresh interpreter: `python -c` with a script below. Two replicas
start from `make_source(kind, seed=0)`'s weights and train on the batches one device
(`CompiledSteps`) trains on; the weights may differ by float rounding only (the two halves of a
batch are summed in another order), so the bound is 1e-6, far below what one step moves.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_script

from keras_bp.errors import UsageError

BOUND = 1e-6  # largest |Δw| allowed between 2 replicas and one device

# Both sources on 2 mirrored replicas vs one device: a 1-step chunk, a 3-step chunk, then a
# final partial batch of 97 rows (split 48/49), on real MNIST.
MIRRORED = r"""
import json
import numpy as np
from keras_bp.distribute import DistributedSteps, is_chief, mirrored, worker_count
strategy = mirrored(2)  # before any TensorFlow op
import tensorflow as tf
from keras_bp.batches import epoch_permutation
from keras_bp.compiled import CompiledSteps
from keras_bp.data import mnist_arrays
from keras_bp.gradients import make_source
from keras_bp.parity import max_abs_difference

(x_train, y_train), _ = mnist_arrays(train_samples=4 * 128 + 97)
x, y = tf.constant(x_train), tf.constant(y_train)
order = epoch_permutation(0, 0, len(x_train))
chunks = [order[:128].reshape(1, 128), order[128:512].reshape(3, 128), order[512:].reshape(1, 97)]
out = {"chief": is_chief(strategy), "workers": worker_count(strategy), "errors": []}
for kind in ("tape", "manual"):
    with strategy.scope():
        source = make_source(kind, seed=0)
    one = make_source(kind, seed=0)
    initial = [v.numpy() for v in one.variables]
    steps = DistributedSteps(source, strategy, 784, 10, batch_size=128)
    single = CompiledSteps(one, 784, 10)
    copies = [strategy.experimental_local_results(v) for v in source.variables]
    state = source.variables + source.optimizer_variables
    result = out[kind] = {
        "mirrored": all(isinstance(v, tf.distribute.DistributedValues) for v in state),
        "devices": sorted({c.device for c in copies[0]}),
        "differences": [], "loss_differences": [], "correct": [],
    }
    for chunk in chunks:
        (losses, correct), (losses1, correct1) = steps.run(x, y, chunk), single.run(x, y, chunk)
        weights = [v.numpy() for v in source.variables]
        result["differences"].append(max_abs_difference(weights, [v.numpy() for v in one.variables]))
        result["loss_differences"].append(float(np.max(np.abs(losses - losses1))))
        result["correct"].append([correct.numpy().tolist(), correct1.numpy().tolist()])
    result["moved"] = max_abs_difference(initial, weights)
    result["copies_equal"] = all(np.array_equal(*(c.numpy() for c in cs)) for cs in copies)
    result["traces"] = steps.traces
    result["evaluate"] = [steps.evaluate(x, y), single.evaluate(x, y)]
for attempt in (
    lambda: DistributedSteps(source, strategy, 784, 10, batch_size=127),
    lambda: DistributedSteps(source, strategy, 784, 10).run(x, y, order[:254].reshape(2, 127)),
    lambda: steps.run(x, y, order[:1].reshape(1, 1)),
):
    try:
        attempt()
        out["errors"].append(None)
    except ValueError as e:
        out["errors"].append(str(e))
print(json.dumps(out))
"""

TOO_LATE = r"""
import os
import tensorflow as tf
from keras_bp.distribute import configure_replicas, multi_worker
from keras_bp.errors import UsageError
tf.constant(1.0) + 1  # TensorFlow has started
os.environ["TF_CONFIG"] = '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}'
for late in (lambda: configure_replicas(2), multi_worker):
    try:
        late()
        print("no error")
    except UsageError as e:
        print(e)
"""


def run_python(code, timeout=300):
    """Run `code` in a fresh interpreter; return the JSON its last line of stdout prints."""
    proc = run_script("-c", code, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


@pytest.fixture(scope="module")
def mirrored_run():
    return json.loads(run_python(MIRRORED)[-1])


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_the_sources_state_is_mirrored_over_two_devices(mirrored_run, kind):
    """Built under `strategy.scope()`, the weights and the optimizer's slots are mirrored."""
    assert mirrored_run[kind]["mirrored"]
    assert [d.rsplit(":", 2)[-2:] for d in mirrored_run[kind]["devices"]] == [
        ["CPU", "0"],
        ["CPU", "1"],
    ]


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_one_step_on_two_replicas_matches_one_device(mirrored_run, kind):
    result = mirrored_run[kind]
    assert result["differences"][0] <= BOUND, result["differences"]
    assert result["loss_differences"][0] <= 1e-6
    assert result["correct"][0][0] == result["correct"][0][1]
    # The bound means something: training moved the weights far more than it.
    assert result["moved"] > 1000 * BOUND


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_a_chunk_and_an_uneven_partial_batch_stay_with_one_device(mirrored_run, kind):
    """Three steps in one call, then 97 rows split 48/49: the copies stay equal, the weights
    within the bound, the losses and hit counts those of the global batch; one trace."""
    result = mirrored_run[kind]
    assert max(result["differences"]) <= BOUND, result["differences"]
    assert max(result["loss_differences"]) <= 1e-6
    assert all(mine == one for mine, one in result["correct"])
    assert result["copies_equal"]
    assert result["traces"] == 1
    (loss, accuracy), (loss1, accuracy1) = result["evaluate"]
    assert loss == pytest.approx(loss1, rel=1e-5, abs=1e-6)
    assert accuracy == accuracy1


def test_a_batch_that_does_not_split_is_refused(mirrored_run):
    global_batch, undivided_run, too_small = mirrored_run["errors"]
    assert "global batch of 127 does not split evenly over 2 replicas" in global_batch
    assert "global batch of 127 does not split evenly over 2 replicas" in undivided_run
    assert "a batch of 1 rows" in too_small


def test_one_process_is_chief_and_one_worker(mirrored_run):
    assert mirrored_run["chief"] is True
    assert mirrored_run["workers"] == 1


def test_devices_and_collectives_must_come_first():
    late_replicas, late_workers = run_python(TOO_LATE)[-2:]
    assert "TensorFlow has already started" in late_replicas
    assert "before any TensorFlow op runs" in late_workers


WORKER_SHAPE = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "TF_CONFIG is not set"),
        ("{'cluster': ", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "worker", "index": 0}}', "cluster.worker"),
        ('{"cluster": {"worker": ["a:1"]}}', "no task with a type and an index"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}}', "no task with"),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            "task index 2 is out of range: cluster.worker lists 2 addresses",
        ),
    ],
)
def test_a_bad_tf_config_is_one_line(monkeypatch, text, message):
    from keras_bp.distribute import check_tf_config, multi_worker

    with pytest.raises(UsageError, match=message) as error:
        check_tf_config(text)
    assert "\n" not in str(error.value)
    if text is None:  # and multi_worker checks before it starts anything
        monkeypatch.delenv("TF_CONFIG", raising=False)
        with pytest.raises(UsageError, match=message):
            multi_worker()


def test_a_good_tf_config_is_read():
    from keras_bp.distribute import check_tf_config

    assert check_tf_config(json.dumps(WORKER_SHAPE)) == WORKER_SHAPE


HUNDRED_STEPS = r"""
import json
from keras_bp.distribute import DistributedSteps, mirrored
strategy = mirrored(2)
import tensorflow as tf
from keras_bp.batches import epoch_permutation
from keras_bp.compiled import CompiledSteps
from keras_bp.data import mnist_arrays
from keras_bp.gradients import make_source
from keras_bp.parity import max_abs_difference

(x_train, y_train), _ = mnist_arrays()
x, y = tf.constant(x_train), tf.constant(y_train)
batches = epoch_permutation(0, 0, len(x_train))[: 100 * 128].reshape(100, 128)
out = {}
for kind in ("tape", "manual"):
    with strategy.scope():
        source = make_source(kind, seed=0)
    one = make_source(kind, seed=0)
    steps, single = DistributedSteps(source, strategy, 784, 10, 128), CompiledSteps(one, 784, 10)
    out[kind] = []
    for batch in batches:  # one step per call, to see the difference after each
        steps.run(x, y, batch[None]), single.run(x, y, batch[None])
        out[kind].append(max_abs_difference(*([v.numpy() for v in s.variables] for s in (source, one))))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_hundred_steps_on_two_replicas_stay_with_one_device():
    """The difference grows slowly, as rounding accumulates, and stays within the bound."""
    differences = json.loads(run_python(HUNDRED_STEPS)[-1])
    for kind, trajectory in differences.items():
        print(kind, {step: f"{trajectory[step - 1]:.2e}" for step in (1, 10, 50, 100)})
        assert trajectory[-1] <= BOUND, (kind, trajectory)


# Two worker processes train both sources on 20 full batches and a final 97-row batch (one
# 52-step chunk and a partial one); the chief then trains one device on the same batches.
WORKER = r"""
import json
from keras_bp.distribute import DistributedSteps, is_chief, multi_worker, worker_count
strategy = multi_worker()  # before any TensorFlow op
import tensorflow as tf
from keras_bp.batches import epoch_chunks, epoch_permutation
from keras_bp.compiled import CompiledSteps
from keras_bp.data import mnist_arrays
from keras_bp.gradients import make_source
from keras_bp.model import weights_digest
from keras_bp.parity import max_abs_difference

(x_train, y_train), _ = mnist_arrays(train_samples=20 * 128 + 97)
x, y = tf.constant(x_train), tf.constant(y_train)
chunks = [c for _, c in epoch_chunks(epoch_permutation(0, 0, len(x_train)), 128, 0, 52)]
out = {"chief": is_chief(strategy), "workers": worker_count(strategy)}
weights = {}
for kind in ("tape", "manual"):
    with strategy.scope():
        source = make_source(kind, seed=0)
    steps = DistributedSteps(source, strategy, 784, 10, batch_size=128)
    losses = [float(loss) for chunk in chunks for loss in steps.run(x, y, chunk)[0]]
    weights[kind] = [v.numpy() for v in source.variables]
    out[kind] = {"digest": weights_digest(weights[kind]), "losses": losses}
for kind in ("tape", "manual") if out["chief"] else ():
    one = make_source(kind, seed=0)
    single = CompiledSteps(one, 784, 10)
    for chunk in chunks:
        single.run(x, y, chunk)
    out[kind]["vs_one_device"] = max_abs_difference(weights[kind], [v.numpy() for v in one.variables])
print(json.dumps(out))
"""


def free_ports(n):
    """`n` ports free on 127.0.0.1 now (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_end_equal_to_each_other_and_to_one_device():
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    procs = []
    try:
        for index in range(2):
            config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="2")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + 120
        outputs = [p.communicate(timeout=max(1, deadline - time.monotonic())) for p in procs]
    finally:  # a worker that failed leaves the other waiting in a collective: end both
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, stderr) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, stderr[-3000:]
    chief, other = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs)
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["workers"] == other["workers"] == 2
    for kind in ("tape", "manual"):
        assert chief[kind]["digest"] == other[kind]["digest"], kind  # bit-identical weights
        assert chief[kind]["losses"] == other[kind]["losses"]
        assert len(chief[kind]["losses"]) == 21
        assert chief[kind]["vs_one_device"] <= BOUND, (kind, chief[kind]["vs_one_device"])
