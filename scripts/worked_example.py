"""
Title: Backpropagation on one neuron, by hand
Description: Two inputs, one sigmoid neuron, a squared error: every gradient worked out.

The smallest network there is: inputs `x1, x2`, weights `w1, w2`, a bias `b` and one
output `y = f(w·x + b)` with `f` the sigmoid. We compute the loss, then the gradients
`∂L/∂w1`, `∂L/∂w2`, `∂L/∂b` backwards with the chain rule, check them against
`tf.GradientTape`, take one step of gradient descent `w ← w − η·∂L/∂w`, and watch the loss
go down.

Run it with `make worked-example`, or:

    .venv/bin/python scripts/worked_example.py
"""

# Setup

from keras_bp import cli

parser = cli.Parser(description="Backpropagation on one neuron, by hand.")
cli.add_verbose(parser)
cli.start_tensorflow(parser.parse_args().verbose)  # quietly, before the imports below

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bp import backprop  # noqa: E402

# The numbers. One example (a batch of N = 1), float64 so every printed digit is exact.

x = np.array([[0.5, -1.0]])  # (N, D) = (1, 2): x1, x2
w = np.array([[0.3], [0.8]])  # (D, M) = (2, 1): w1, w2
b = np.array([0.1])  # (M,) = (1,)
target = np.array([[1.0]])  # (N, M)
learning_rate = 0.5  # η

# The inputs first, so that every number below can be followed by hand.
print(f"x = (x1, x2) = ({x[0, 0]}, {x[0, 1]})")
print(f"w = (w1, w2) = ({w[0, 0]}, {w[1, 0]}), b = {b[0]}")
print(f"target = {target[0, 0]}, learning rate η = {learning_rate}")
print("y = sigmoid(w1·x1 + w2·x2 + b), L = (y - target)²\n")

# Forward: z = w1·x1 + w2·x2 + b, y = σ(z) = 1 / (1 + e^−z), L = (y − target)²
# (the mean squared error, with one example and one output, is just that square).

y, cache = backprop.dense_forward(x, w, b, activation="sigmoid")
loss, dy = backprop.mean_squared_error(target, y)
z = x @ w + b
print(f"z = w1·x1 + w2·x2 + b = {z[0, 0]:.10f}")
print(f"y = sigmoid(z)        = {y[0, 0]:.10f}")
print(f"L = (y - target)²     = {loss:.10f}")

# Backward, by the chain rule, one factor at a time:
#   ∂L/∂y  = 2·(y − target)
#   ∂y/∂z  = σ(z)·(1 − σ(z)) = y·(1 − y)
#   ∂z/∂w1 = x1,  ∂z/∂w2 = x2,  ∂z/∂b = 1
# so ∂L/∂w1 = ∂L/∂y · ∂y/∂z · x1, and so on. `dense_backward` multiplies out exactly these.

print(f"\n∂L/∂y = 2·(y - target) = {dy[0, 0]:.10f}")
print(f"∂y/∂z = y·(1 - y)      = {y[0, 0] * (1 - y[0, 0]):.10f}")
_, dw, db = backprop.dense_backward(dy, cache)  # dx would feed a layer below; none here

# The same gradients from tf.GradientTape, which differentiates the forward pass itself.

w1, w2, bias = (tf.Variable(v) for v in (w[0, 0], w[1, 0], b[0]))
with tf.GradientTape() as tape:
    y_tape = tf.sigmoid(w1 * x[0, 0] + w2 * x[0, 1] + bias)
    loss_tape = (y_tape - target[0, 0]) ** 2
tape_grads = tape.gradient(loss_tape, [w1, w2, bias])

print()
for name, by_hand, tape_grad in zip(
    ["w1", "w2", "b"], [dw[0, 0], dw[1, 0], db[0]], tape_grads, strict=True
):
    print(f"∂L/∂{name:<3} by hand = {by_hand:+.12f}   tape = {tape_grad:+.12f}")

# One update: w ← w − η·∂L/∂w, and the same for b.

w, b = w - learning_rate * dw.numpy(), b - learning_rate * db.numpy()
print(f"\nafter one step: w1 = {w[0, 0]:.10f}, w2 = {w[1, 0]:.10f}, b = {b[0]:.10f}")

# A few more steps: forward, backward, update. The loss goes down.

print(f"\nstep 0: loss = {loss:.10f}")
for step in range(1, 6):
    y, cache = backprop.dense_forward(x, w, b, activation="sigmoid")
    loss, dy = backprop.mean_squared_error(target, y)
    print(f"step {step}: loss = {loss:.10f}")
    _, dw, db = backprop.dense_backward(dy, cache)
    w, b = w - learning_rate * dw.numpy(), b - learning_rate * db.numpy()
