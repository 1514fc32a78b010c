"""The recipe as a JAX user writes it: `jax.jit` over a `jax.lax.scan` of an epoch's steps.

No Keras. The parameters are a tuple of arrays `(W1, b1, W2, b2)`, the loss is the
cross-entropy of the softmax taken from the logits, and RMSprop is Keras's rule written out:

    v ← ρ·v + (1 − ρ)·g²;  w ← w − lr·g / √(v + ε)

Each epoch sees keras_bp's batches (`keras_bp.data.batches`): the same samples in the same
order as the shipped loops and `fit`. One compiled call runs a whole epoch: the full batches as a
scan, then the final partial batch (60000 = 468·128 + 96). `make bench` times it against the
training floor (`keras_bp.speed.peers`).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from keras_bp.data.batches import epoch_permutation

# keras.optimizers.RMSprop's defaults, as the recipe uses them (a test checks they still are).
LEARNING_RATE, RHO, EPSILON = 1e-3, 0.9, 1e-7


def forward(params, x):
    """The logits of `x: (N, 784)`: `relu(x·W1 + b1)·W2 + b2`, `(N, 10)`."""
    w1, b1, w2, b2 = params
    return jax.nn.relu(x @ w1 + b1) @ w2 + b2


def loss_fn(params, x, y):
    """Mean categorical cross-entropy of `softmax(logits)` against one-hot `y: (N, 10)`."""
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(forward(params, x)), axis=-1))


def train_step(state, batch):
    """One step of RMSprop on `batch = (x, y)`; `state = (params, velocities)`."""
    params, velocities = state
    loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
    velocities = jax.tree.map(lambda v, g: RHO * v + (1 - RHO) * g**2, velocities, grads)
    # epsilon inside the square root, as keras.optimizers.RMSprop does
    params = jax.tree.map(
        lambda w, g, v: w - LEARNING_RATE * g / jnp.sqrt(v + EPSILON), params, grads, velocities
    )
    return (params, velocities), loss


@jax.jit(static_argnames="batch_size")
def train_epoch(state, x, y, order, batch_size):
    """One epoch in `order`: the full batches scanned, then the partial one. Returns `(state,
    mean loss over the epoch's samples)`."""
    full = len(order) // batch_size
    batches = order[: full * batch_size].reshape(full, batch_size)  # (steps, batch)
    state, losses = jax.lax.scan(lambda s, rows: train_step(s, (x[rows], y[rows])), state, batches)
    loss_sum = jnp.sum(losses) * batch_size
    rest = order[full * batch_size :]
    if len(rest):  # a shape known when tracing: one compile covers both parts
        state, loss = train_step(state, (x[rest], y[rest]))
        loss_sum += loss * len(rest)
    return state, loss_sum / len(order)


@jax.jit
def accuracy(params, x, y):
    """The fraction of rows whose argmax of the logits is the one-hot label's."""
    return jnp.mean(jnp.argmax(forward(params, x), axis=-1) == jnp.argmax(y, axis=-1))


def train(initial_weights, x_train, y_train, epochs, batch_size=128, seed=0):
    """Train from `initial_weights` `[W1 (784, 512), b1, W2 (512, 10), b2]` (Keras's layout).

    Returns `(params, history)`: the trained `(W1, b1, W2, b2)` and `{"loss": [...],
    "seconds": [...]}` per epoch; the first epoch's seconds include compiling.
    """
    params = tuple(jnp.asarray(w) for w in initial_weights)
    state = (params, tuple(jnp.zeros_like(w) for w in params))
    x, y = jnp.asarray(x_train), jnp.asarray(y_train)  # on the device once, outside the epochs
    history = {"loss": [], "seconds": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        order = jnp.asarray(epoch_permutation(seed, epoch, len(x_train)))
        state, loss = train_epoch(state, x, y, order, batch_size)
        history["loss"].append(float(loss))  # waits for the epoch to finish
        history["seconds"].append(time.perf_counter() - start)
    return state[0], history


def evaluate(params, x_test, y_test) -> float:
    """The test accuracy of `params`."""
    return float(accuracy(params, jnp.asarray(x_test), jnp.asarray(y_test)))


def weights(params) -> list:
    """`params` as numpy arrays in Keras's layout, `[W1, b1, W2, b2]`."""
    return [np.asarray(w) for w in params]
