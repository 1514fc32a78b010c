"""The training loop in the keras-io guide's shape. Start reading keras_bp here.

Every keras_bp trainer but `fit` is this loop, with one of two gradient sources
(`keras_bp.gradients`): `TapeGradients` (`tf.GradientTape` and Keras's RMSprop) or
`ManualGradients` (the hand-written backward of `keras_bp.backprop` and the hand-written
RMSprop of `keras_bp.optimizers`):

    source = make_source("manual", seed=0)
    train_reference(source, x_train, y_train, epochs=5, batch_size=128, seed=0)

The loop is plain Python over the sources' two calls, so it runs on every Keras backend
(`KERAS_BACKEND=jax` or `torch`): there `make_source("tape")` is that backend's autodiff
(`jax.value_and_grad`, `loss.backward()`), and the hand-written source is the same code.
`tests/test_backends_reference.py` holds each to TensorFlow's after 16 steps.

It runs eagerly, one batch per Python iteration, so it is slow. `keras_bp.training.loop.train_loop`
is the same loop made fast and safe: compiled chunks of steps, a progress bar, checkpoints and
resume. `tests/test_reference.py` holds the two to the same weights after the same batches.
"""

from keras_bp.data.batches import epoch_batches, epoch_permutation


def train_reference(source, x_train, y_train, epochs, batch_size, seed=0, verbose=True):
    """Train `source` on `(x_train, y_train)`; return the mean training loss of each epoch."""
    history = []
    for epoch in range(epochs):
        # A fresh shuffle every epoch, fixed by (seed, epoch).
        order = epoch_permutation(seed, epoch, len(x_train))
        loss_sum = 0.0
        for batch in epoch_batches(order, batch_size):
            x, y = x_train[batch], y_train[batch]
            # Forward y = f(w·x + b) layer by layer, then backward from the loss: ∂L/∂w, ∂L/∂b.
            loss, _, grads = source.loss_and_gradients(x, y)
            # The update: w ← w − η·∂L/∂w (RMSprop divides η·∂L/∂w by √(v + ε) per weight).
            source.apply_gradients(grads)
            loss_sum += float(loss) * len(batch)
        history.append(loss_sum / len(x_train))
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
    return history
