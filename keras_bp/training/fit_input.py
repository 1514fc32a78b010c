"""`fit`'s input: a new shuffle every epoch, as the published recipe gets, fixed by `(seed, epoch)`.

The published recipe runs unseeded, so `fit(x, y, batch_size=128)` shuffles the training set
into a new order every epoch. Seeded, Keras's TensorFlow backend repeats one order in every
epoch: its shuffle's random stream restarts with each pass over the data. No argument of `fit`
changes that; only its input can. So `fit` is given a `tf.data.Dataset` of the same batches
the arrays would give, in the order `keras_bp.data.batches.epoch_permutation(seed, epoch)` fixes,
which is also the loops' order: the three trainers see the same batches, and a resumed run the
order an uninterrupted one would have seen. `FitConfig.keras_shuffle` gives `fit` the arrays.
On JAX and PyTorch the same batches come from a `keras.utils.PyDataset`, which every backend's
`fit` reads: a gather is exact, so the batches are equal bit for bit.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_bp.config import steps_per_epoch
from keras_bp.data.batches import epoch_permutation


class EpochOrder(keras.callbacks.Callback):
    """`dataset`: the batches of `(x, y)` in epoch `e`'s order, which `on_epoch_begin(e)` sets.

    `on_epoch_begin` puts the training set into the epoch's order once (one streaming pass, as
    the loop's `keras_bp.training.compiled.epoch_input`), so each batch is a slice of that copy,
    not a gather of rows scattered over all of it. Keras creates the epoch's iterator after
    `on_epoch_begin`, so each epoch's batches read the copy of that epoch. The last batch is
    partial when `batch_size` does not divide `len(x)`.

    `copy=False` keeps only the order and gathers each batch (as before the copy; `make profile`
    times both): the same batches.
    """

    def __init__(self, x, y, batch_size: int, seed: int, copy=True):
        super().__init__()
        self.seed, self.samples, self.copy = seed, len(x), copy
        if keras.backend.backend() != "tensorflow":  # tf.data's variables are TensorFlow's
            self.dataset = OrderedBatches(x, y, batch_size)
            return
        self.x, self.y = tf.constant(x), tf.constant(y)
        # The epoch's rows: its copy, or its order. Assigned each epoch; a batch read before an
        # assignment keeps the buffer it read (a variable's new value never overwrites one in use).
        if copy:
            self.x_epoch = tf.Variable(self.x, trainable=False)
            self.y_epoch = tf.Variable(self.y, trainable=False)
        else:
            self.order = tf.Variable(tf.range(self.samples), trainable=False)

        def batch(step):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            if copy:
                return self.x_epoch[rows], self.y_epoch[rows]
            return tf.gather(self.x, self.order[rows]), tf.gather(self.y, self.order[rows])

        steps = steps_per_epoch(self.samples, batch_size)
        self.dataset = tf.data.Dataset.range(steps).map(batch).prefetch(2)

    def on_epoch_begin(self, epoch, logs=None):
        order = epoch_permutation(self.seed, epoch, self.samples)
        if isinstance(self.dataset, OrderedBatches):
            self.dataset.order = order
            return
        if not self.copy:
            self.order.assign(order)
            return
        self.x_epoch.assign(tf.gather(self.x, order))
        self.y_epoch.assign(tf.gather(self.y, order))


class OrderedBatches(keras.utils.PyDataset):
    """The same batches for `fit` on any backend: batch `i` is `x[order[i·B : (i+1)·B]]`.

    Read in order by one worker, with `order` set by `EpochOrder.on_epoch_begin`.
    """

    def __init__(self, x, y, batch_size: int):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.order = np.arange(len(x))

    def __len__(self):
        return steps_per_epoch(len(self.x), self.batch_size)

    def __getitem__(self, step):
        rows = self.order[step * self.batch_size : (step + 1) * self.batch_size]
        return self.x[rows], self.y[rows]
