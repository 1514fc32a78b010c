"""Data-parallel training of the loop with `tf.distribute`: each step's batch split over replicas.

Every replica holds a copy of the weights (`MirroredVariable`s), takes its contiguous slice of
each global batch and backpropagates through it. Weighted by their share of the batch and summed
over the replicas, the slices' gradients are the whole batch's, so every replica applies the
update one device would, and the copies stay equal:

    ∂L/∂w = Σ_r (n_r / N)·∂L_r/∂w        L_r: the mean loss of replica r's n_r of the N rows

`mirrored(n)` runs n replicas in one process (logical CPU devices, or the GPUs);
`multi_worker()` one process per worker, as TF_CONFIG lists them. Build the gradient source
under the strategy's scope, so that its variables and its optimizer's are mirrored:

    strategy = mirrored(2)
    with strategy.scope():
        source = make_source("manual", seed=0)
    steps = DistributedSteps(source, strategy, 784, 10, batch_size=128)
"""

import numpy as np
import tensorflow as tf

from keras_bp.data.batches import first_row
from keras_bp.gradients import GradientSource, TapeGradients, count_correct
from keras_bp.runtime import cluster
from keras_bp.runtime.errors import UsageError
from keras_bp.training.compiled import batch_rows, rows_signature, step_signature, while_steps

SUM = tf.distribute.ReduceOp.SUM


def configure_replicas(n):
    """Split the host CPU into `n` logical devices, `/cpu:0` … `/cpu:{n-1}`.

    TensorFlow fixes its devices when it first runs an op, so call this before any.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * n
        )
    except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
        if len(tf.config.list_logical_devices("CPU")) != n:
            raise UsageError(
                f"cannot split the CPU into {n} devices: TensorFlow has already started; "
                "configure the replicas before any TensorFlow op runs"
            ) from None


def mirrored(n):
    """`MirroredStrategy` over `n` replicas in this process: the GPUs if any, else n CPU devices."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if n > len(gpus):
            raise UsageError(f"{n} replicas asked for, but this machine has {len(gpus)} GPUs")
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(n)])
    configure_replicas(n)
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])


def multi_worker():
    """`MultiWorkerMirroredStrategy` over the workers TF_CONFIG lists; this process is its task."""
    cluster.read()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()  # waits for every task
    except RuntimeError:  # "Collective ops must be configured at program startup"
        raise UsageError(
            "multi-worker training must be set up before any TensorFlow op runs"
        ) from None
    cluster.joined()  # the cluster has formed: stop the bound on the wait (cluster.JoinDeadline)
    return strategy


def is_chief(strategy):
    """Whether this process saves: worker 0 (or the cluster's chief), or the only process."""
    return strategy.extended.should_checkpoint  # what MultiWorkerMirroredStrategy calls chief


def worker_count(strategy):
    """How many processes train together: 1 unless the strategy spans a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec() if resolver else None
    jobs = [job for job in ("chief", "worker") if spec and job in spec.jobs]
    return sum(spec.num_tasks(job) for job in jobs) or 1


class DistributedSteps:
    """`run(x, y, indices)`: `CompiledSteps` (`keras_bp.training.compiled`), each batch split over
    replicas.

    All steps of a chunk run in one `tf.function` call: a `tf.while_loop` calls `strategy.run`
    once per step, so the all-reduce is inside the graph. Replica r of R takes rows
    `[r·N//R, (r+1)·N//R)` of the step's N and weights its gradients by `n_r/N`. The manual
    source sums them with the replica context's `all_reduce`, then each replica applies the
    sum with the hand-written optimizer to its own copy. Keras does both halves itself: under a
    strategy its losses come already divided by R (`keras/src/losses/loss.py`,
    `scale_loss_for_distribution`) and its optimizer SUMs the gradients across replicas
    (`keras/src/backend/tensorflow/optimizer.py`, `_all_reduce_sum_gradients`). So the tape
    source's gradients are rescaled by `R·n_r/N`, exactly 1 when R divides N, and handed to
    Keras's optimizer. Either way each replica applies `Σ_r (n_r/N)·g_r`.

    Every worker passes the same `x`, `y` and `indices` (the loop's shuffle is a function of
    the seed and the epoch) and trains on its replicas' slices only. Indices that number
    consecutive rows (the loop's, over each epoch's permuted copy: `compiled.epoch_input`) run
    in `rows_graph`, where each replica slices its rows; any others in `graph`, where it
    gathers them.

    Args:
        source: a gradient source built under `strategy.scope()`.
        strategy: `mirrored(n)`, `multi_worker()` or any `tf.distribute.Strategy`.
        num_features, num_classes: the widths of `x` and the one-hot `y`.
        batch_size: the global batch; it must divide by the replica count. A smaller batch,
            the epoch's final partial one, need not: its slices differ by one row and their
            weights `n_r/N` keep the update exact, so nothing is padded or dropped. Without
            `batch_size`, every batch must divide.
    """

    def __init__(
        self, source: GradientSource, strategy, num_features, num_classes, batch_size=None
    ):
        self.source, self.strategy, self.batch_size = source, strategy, batch_size
        self.replicas = strategy.num_replicas_in_sync
        if batch_size is not None and batch_size % self.replicas:
            raise ValueError(_undivided(batch_size, self.replicas))
        self.keras_source = isinstance(source, TapeGradients)  # distribution-aware, see above
        self.traces = 0
        signature = step_signature(num_features, num_classes)
        self.graph = tf.function(self._gathered, input_signature=signature, autograph=False)
        self.rows_graph = tf.function(
            self._sliced,
            input_signature=rows_signature(num_features, num_classes),
            autograph=False,
        )
        self.evaluate_graph = tf.function(
            self._evaluate, input_signature=signature[:2], autograph=False
        )

    def run(self, x, y, indices):
        """`(losses, correct)` of each step over the global batch, for `indices: (steps, N)`."""
        indices = np.asarray(indices, np.int32)
        steps, batch = indices.shape
        if batch % self.replicas and (self.batch_size is None or batch >= self.batch_size):
            raise ValueError(_undivided(batch, self.replicas))
        if batch < self.replicas:
            raise ValueError(f"a batch of {batch} rows cannot feed {self.replicas} replicas")
        first = first_row(indices)
        if first is not None:
            return self.rows_graph(x, y, first, batch, steps)
        return self.graph(x, y, indices, steps)

    def evaluate(self, x, y):
        """`(loss, accuracy)` of the weights on all of `x`, `y`: one forward pass, one device
        (the copies are equal)."""
        loss, correct = self.evaluate_graph(x, y)
        return float(loss), int(correct) / len(x)

    def _evaluate(self, x, y):
        loss, scores = self.source.forward(x, y)
        return loss * self._loss_divisor(), count_correct(y, scores)

    def _loss_divisor(self):
        """R for a Keras loss under an R-replica strategy, which divides its mean by R (inside
        `strategy.run` or `strategy.scope()`, read at trace time); 1 otherwise."""
        return tf.distribute.get_strategy().num_replicas_in_sync if self.keras_source else 1

    def _gathered(self, x, y, indices, steps):
        self.traces += 1
        return while_steps(
            lambda i: self._global_step(self._replica_gathers, (x, y, indices[i])),
            steps,
            size=tf.shape(indices)[0],
        )

    def _sliced(self, x, y, first, batch, steps):
        self.traces += 1
        return while_steps(
            lambda i: self._global_step(self._replica_slices, (x, y, first + i * batch, batch)),
            steps,
            size=steps,
        )

    def _global_step(self, replica_step, args):
        """`(loss, hits)` of one step over the global batch: `replica_step` on every replica."""
        totals = self.strategy.run(replica_step, args=args)
        return tf.unstack(self.strategy.experimental_local_results(totals)[0])

    def _part(self, n):
        """This replica's rows `[lo, hi)` of a global batch of `n`."""
        r = tf.distribute.get_replica_context().replica_id_in_sync_group
        return r * n // self.replicas, (r + 1) * n // self.replicas

    def _replica_gathers(self, x, y, batch):
        """One replica's part of a step on the rows `batch` lists, gathered."""
        lo, hi = self._part(tf.shape(batch)[0])
        rows = batch[lo:hi]
        return self._replica_step(tf.gather(x, rows), tf.gather(y, rows), tf.shape(batch)[0])

    def _replica_slices(self, x, y, first, n):
        """One replica's part of a step on rows `[first, first + n)`, sliced."""
        lo, hi = self._part(n)
        return self._replica_step(*batch_rows(x, y, first + lo, hi - lo), n)

    def _replica_step(self, xs, ys, n):
        """One replica's part of a step on its rows `xs`, `ys` of the global batch of `n`: its
        slice's scaled loss and its hit count."""
        context = tf.distribute.get_replica_context()
        share = tf.cast(tf.shape(xs)[0], tf.float32) / tf.cast(n, tf.float32)  # n_r / N
        loss, scores, grads = self.source.loss_and_gradients(xs, ys)
        mean = tf.cast(loss, tf.float32) * self._loss_divisor()  # the slice's mean loss
        weight = share * self._loss_divisor()  # from the source's gradients to n_r/N's
        grads = [weight * g for g in grads]
        # Σ_r of the slice's share of the loss and its hits: the global batch's mean and count
        totals = tf.stack([share * mean, tf.cast(count_correct(ys, scores), tf.float32)])
        if self.keras_source:  # Keras's optimizer sums the gradients itself
            totals = context.all_reduce(SUM, totals)
        else:  # one all-reduce for both, so the small one rides with the large
            *grads, totals = context.all_reduce(SUM, [*grads, totals])
        self.source.apply_gradients(grads)
        return totals


def _undivided(batch, replicas):
    return (
        f"batch_size: a global batch of {batch} does not split evenly over {replicas} replicas; "
        f"expected a multiple of {replicas}"
    )


_strategies = {}  # one per process: a cluster's strategy can be created only once


def strategy_for(config):
    """The strategy `config.strategy` names, created once per process; `None` for one device.

    The scripts call it right after TensorFlow starts, before any op: logical devices and a
    cluster's collectives can be set up only then.
    """
    if config.strategy is None:
        return None
    key = (config.strategy, config.replicas)
    if key not in _strategies:
        make = mirrored if config.strategy == "mirrored" else multi_worker
        _strategies[key] = make(config.replicas) if config.strategy == "mirrored" else make()
    return _strategies[key]


def describe(strategy) -> dict:
    """`metrics.json`'s `distribution`: the strategy, its replicas and its worker processes."""
    if strategy is None:
        return {"strategy": None, "replicas": 1, "workers": 1}
    multi = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    return {
        "strategy": "multi-worker" if multi else "mirrored",
        "replicas": strategy.num_replicas_in_sync,
        "workers": worker_count(strategy),
    }
