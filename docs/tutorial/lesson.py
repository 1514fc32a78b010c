# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Backpropagation, run step by step
#
# *中文版: [lesson.zh-CN.ipynb](lesson.zh-CN.ipynb)*
#
# This notebook is the lesson keras_bp reproduces, in the order the tutorial teaches it, with
# every number computed by keras_bp itself: the hand-written backward passes of
# `keras_bp.backprop`, the trainers of `keras_bp.training`, MNIST from `keras_bp.data`. Nothing
# here is a second copy of the maths: each cell calls the package that the tests check.
#
# Backpropagation has **two phases**: a *forward* pass computes the output and the loss; a
# *backward* pass sends the loss's gradient from the output back to every weight. Training
# repeats **four steps**:
#
# 1. **Forward**: each layer computes $y = f(w \cdot x + b)$.
# 2. **Loss**: compare $y$ with the target, for example the mean squared error
#    $L = \frac{1}{N}\sum (y - t)^2$ or the cross-entropy $L = -\sum_i t_i \log y_i$.
# 3. **Backward**: the gradients $\partial L/\partial w$ and $\partial L/\partial b$, from the
#    output layer back, by the chain rule; then the update $w \leftarrow w - \eta\,\partial L/\partial w$.
# 4. **Repeat** until the loss converges.
#
# The sizes below are the full lesson's. A test runs the same notebook on a small slice of MNIST
# by setting `KERAS_BP_TUTORIAL_SMALL=1` (or each size's own variable).

# %% tags=["parameters"]
import os

SMALL = os.environ.get("KERAS_BP_TUTORIAL_SMALL", "") not in ("", "0")


def size(name, full, small):
    """A size from the environment variable KERAS_BP_TUTORIAL_<NAME>, else the default."""
    return int(os.environ.get(f"KERAS_BP_TUTORIAL_{name}", small if SMALL else full))


TRAIN_SAMPLES = size("TRAIN_SAMPLES", 60000, 1024)  # MNIST training images used
TEST_SAMPLES = size("TEST_SAMPLES", 10000, 1000)  # MNIST test images used
EPOCHS = size("EPOCHS", 5, 1)  # the recipe's 5 epochs, for the three trainers
OVERFIT_EPOCHS = size("OVERFIT_EPOCHS", 20, 4)  # the long run that overfits
GRID_EPOCHS = size("GRID_EPOCHS", 1, 1)  # each loss × activation pair
GRID_SAMPLES = size("GRID_SAMPLES", 60000, 512)  # training images for the grid
GRID_ACTIVATIONS = os.environ.get(
    "KERAS_BP_TUTORIAL_GRID_ACTIVATIONS", "relu,tanh" if SMALL else "relu,sigmoid,tanh"
).split(",")
# On a small slice, tracing each model would cost more than its few steps: run them eagerly.
GRID_EAGER = SMALL

# %% [markdown]
# ## Setup
#
# TensorFlow starts quietly (`keras_bp.runtime.tensorflow_start`); every run writes into a
# temporary folder, and every figure is drawn by `keras_bp.report.figures`.

# %%
import tempfile
from pathlib import Path

from keras_bp.runtime.tensorflow_start import start_tensorflow

start_tensorflow()

import keras
import numpy as np
import tensorflow as tf
from IPython.display import Image, display

from keras_bp import backprop, data
from keras_bp.checks.gradcheck import TOLERANCES, max_errors
from keras_bp.config import FitConfig, LoopConfig, steps_per_epoch
from keras_bp.model import build_model
from keras_bp.report import figures, seeds
from keras_bp.report.published import PUBLISHED
from keras_bp.speed import bench, floors
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit

OUT = Path(os.environ.get("KERAS_BP_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="keras_bp_lesson_"))
np.set_printoptions(precision=6, suppress=True)


def show(path):
    display(Image(filename=str(path)))


# %% [markdown]
# ## 1. One neuron, by hand
#
# The smallest network: two inputs $x_1, x_2$, weights $w_1, w_2$, a bias $b$, one output
# through the sigmoid $\sigma(z) = 1/(1 + e^{-z})$, and the squared error against the target $t$:
#
# $$z = w_1 x_1 + w_2 x_2 + b, \qquad y = \sigma(z), \qquad L = (y - t)^2.$$
#
# The numbers: $x = (0.5, -1.0)$, $w = (0.3, 0.8)$, $b = 0.1$, $t = 1$, learning rate
# $\eta = 0.5$, in float64, so rounding stays far below the printed digits.

# %%
x = np.array([[0.5, -1.0]])  # (N, D) = (1, 2): x1, x2
w = np.array([[0.3], [0.8]])  # (D, M) = (2, 1): w1, w2
b = np.array([0.1])  # (M,)
target = np.array([[1.0]])  # (N, M)
learning_rate = 0.5  # η

# %% [markdown]
# ### Forward and loss
#
# `backprop.dense_forward` computes $y = f(w \cdot x + b)$ and keeps what the backward pass will
# need; `backprop.mean_squared_error` returns the loss and $\partial L/\partial y$.

# %%
y, cache = backprop.dense_forward(x, w, b, activation="sigmoid")
loss, dy = backprop.mean_squared_error(target, y)
z = (x @ w + b)[0, 0]
print(f"z = w1·x1 + w2·x2 + b = 0.3·0.5 + 0.8·(-1.0) + 0.1 = {z:+.10f}")
print(f"y = σ(z) = 1 / (1 + e^-z)                        = {y[0, 0]:.10f}")
print(f"L = (y - t)²                                       = {loss:.10f}")

# %% [markdown]
# ### Backward, by the chain rule
#
# The tutorial leaves this neuron's backward section empty; here it is, one factor at a time.
# The loss depends on $w_1$ only through $z$, and on $z$ only through $y$. So
#
# $$\frac{\partial L}{\partial w_1} = \frac{\partial L}{\partial y}\cdot\frac{\partial y}{\partial z}\cdot\frac{\partial z}{\partial w_1},$$
#
# $$\frac{\partial L}{\partial y} = 2(y - t), \qquad \frac{\partial y}{\partial z} = \sigma(z)\,(1 - \sigma(z)) = y(1 - y),$$
#
# $$\frac{\partial z}{\partial w_1} = x_1, \qquad \frac{\partial z}{\partial w_2} = x_2, \qquad \frac{\partial z}{\partial b} = 1.$$
#
# Each factor is printed below, multiplied out by hand, then by `backprop.dense_backward` (the
# function every keras_bp trainer uses), and then by `tf.GradientTape`, which differentiates the
# forward pass itself.

# %%
dL_dy = dy[0, 0].numpy()
dy_dz = y[0, 0].numpy() * (1 - y[0, 0].numpy())
dL_dz = dL_dy * dy_dz
print(f"∂L/∂y = 2·(y - t)       = {dL_dy:+.10f}")
print(f"∂y/∂z = y·(1 - y)       = {dy_dz:+.10f}")
print(f"∂L/∂z = ∂L/∂y · ∂y/∂z   = {dL_dz:+.10f}")
chain = {"w1": dL_dz * x[0, 0], "w2": dL_dz * x[0, 1], "b": dL_dz * 1.0}
for name, factor in [("w1", "x1 = 0.5"), ("w2", "x2 = -1.0"), ("b", "1")]:
    print(f"∂L/∂{name:<2} = ∂L/∂z · {factor:<9} = {chain[name]:+.10f}")

# %%
_, dw, db = backprop.dense_backward(dy, cache)  # dx would feed a layer below; none here
w1, w2, bias = (tf.Variable(v) for v in (w[0, 0], w[1, 0], b[0]))
with tf.GradientTape() as tape:
    y_tape = tf.sigmoid(w1 * x[0, 0] + w2 * x[0, 1] + bias)
    loss_tape = (y_tape - target[0, 0]) ** 2
tape_grads = [g.numpy() for g in tape.gradient(loss_tape, [w1, w2, bias])]
by_hand = [dw[0, 0].numpy(), dw[1, 0].numpy(), db[0].numpy()]

neuron_tolerance = TOLERANCES["float64"]
print(f"{'':6}{'chain rule':>17}{'dense_backward':>17}{'GradientTape':>17}{'|hand - tape|':>15}")
for name, hand, tape_grad in zip(chain, by_hand, tape_grads, strict=True):
    row = f"∂L/∂{name:<2}{chain[name]:+17.12f}{hand:+17.12f}{tape_grad:+17.12f}"
    print(f"{row}{abs(hand - tape_grad):15.1e}")
np.testing.assert_allclose(by_hand, tape_grads, **neuron_tolerance)
np.testing.assert_allclose(list(chain.values()), tape_grads, **neuron_tolerance)
print(f"agree within rtol={neuron_tolerance['rtol']:.0e}, atol={neuron_tolerance['atol']:.0e}")

# %% [markdown]
# ### One update
#
# Gradient descent moves every parameter against its gradient:
# $w \leftarrow w - \eta\,\partial L/\partial w$ and $b \leftarrow b - \eta\,\partial L/\partial b$.
# The loss after the step is lower.

# %%
w_next = w - learning_rate * dw.numpy()
b_next = b - learning_rate * db.numpy()
y_next, _ = backprop.dense_forward(x, w_next, b_next, activation="sigmoid")
loss_next, _ = backprop.mean_squared_error(target, y_next)
print(f"w1: {w[0, 0]:.4f} → {w_next[0, 0]:.10f}")
print(f"w2: {w[1, 0]:.4f} → {w_next[1, 0]:.10f}")
print(f"b:  {b[0]:.4f} → {b_next[0]:.10f}")
print(f"L:  {loss:.10f} → {loss_next:.10f}")

# %% [markdown]
# ## 2. Repeat until the loss converges
#
# **Stopping rule**: stop at the first step where the loss fell by less than
# $10^{-6}$ from the step before (and after at most 100,000 steps, which it never needs).

# %%
CONVERGED = 1e-6  # the smallest improvement per step that still counts
MAX_STEPS = 100_000

w_t, b_t, losses = w, b, []
for step in range(MAX_STEPS):
    y_t, cache_t = backprop.dense_forward(x, w_t, b_t, activation="sigmoid")
    loss_t, dy_t = backprop.mean_squared_error(target, y_t)
    losses.append(float(loss_t))
    if step > 0 and losses[-2] - losses[-1] < CONVERGED:
        break
    _, dw_t, db_t = backprop.dense_backward(dy_t, cache_t)
    w_t, b_t = w_t - learning_rate * dw_t.numpy(), b_t - learning_rate * db_t.numpy()
converged_step = len(losses) - 1
print(f"converged at step {converged_step}: L = {losses[-1]:.6f} (from {losses[0]:.6f}),")
print(f"the last step lowered it by {losses[-2] - losses[-1]:.4e} < {CONVERGED:.0e}")
print(f"y = {y_t[0, 0]:.4f} (target 1), w = ({w_t[0, 0]:.4f}, {w_t[1, 0]:.4f}), b = {b_t[0]:.4f}")

# %%
show(figures.neuron_convergence(losses, CONVERGED, OUT / "neuron_convergence.png"))

# %% [markdown]
# The loss falls fast, then slowly: as $y \to 1$ the sigmoid saturates and the factor
# $y(1 - y)$ in every gradient goes to zero with it.
#
# ## 3. Two layers: the MNIST network's backward pass
#
# The network of the Keras MNIST example: $784 \to$ Dense(512, ReLU) $\to$ Dense(10, softmax),
# with the categorical cross-entropy. Backward through one dense layer
# $y = f(z)$, $z = x W + b$ is four formulas, for a batch $x$ of shape $(N, D)$:
#
# $$dz = dy \odot f'(z), \qquad dW = x^\top dz, \qquad db = \textstyle\sum_n dz_n, \qquad dx = dz\,W^\top.$$
#
# The output layer's softmax and the cross-entropy together collapse to
# $dz_2 = (p - y)/N$, with $p$ the softmax's probabilities and $y$ the one-hot labels. The
# layer below gets $dx$ of the layer above as its $dy$: that hand-over is all of
# backpropagation.

# %%
(x_train, y_train), (x_test, y_test) = data.mnist_arrays(TRAIN_SAMPLES)
x_test, y_test = x_test[:TEST_SAMPLES], y_test[:TEST_SAMPLES]
print(f"training images: {x_train.shape}, labels one-hot: {y_train.shape}; test: {x_test.shape}")

keras.utils.set_random_seed(0)
model = build_model()  # the recipe's model, compiled as the example compiles it
W1, b1, W2, b2 = model.get_weights()
xb, yb = x_train[:128], y_train[:128]  # one batch of the recipe's 128

# Forward, layer by layer: h = relu(x·W1 + b1), then the logits z2 = h·W2 + b2.
h, cache1 = backprop.dense_forward(xb, W1, b1, activation="relu")
z2, cache2 = backprop.dense_forward(h, W2, b2, activation="linear")
loss_mnist, dz2 = backprop.softmax_crossentropy(yb, z2)  # dz2 = (softmax(z2) - y) / N
# Backward, layer by layer: layer 2 hands dh to layer 1.
dh, dW2, db2 = backprop.dense_backward(dz2, cache2)
_, dW1, db1 = backprop.dense_backward(dh, cache1)
manual = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

with tf.GradientTape() as tape:
    loss_keras = keras.losses.CategoricalCrossentropy()(yb, model(xb, training=True))
tape_mnist = dict(zip(manual, tape.gradient(loss_keras, model.trainable_variables), strict=True))

mnist_tolerance = TOLERANCES["float32"]
print(f"loss: by hand {loss_mnist:.6f}, Keras {loss_keras:.6f}")
print(f"{'':4}{'shape':>12}{'max |hand - tape|':>20}{'max |tape|':>13}{'relative':>11}")
for name in ["W2", "b2", "W1", "b1"]:  # in the order the backward pass computes them
    errors = max_errors([manual[name]], [tape_mnist[name]])
    scale = np.abs(tape_mnist[name].numpy()).max()
    shape = str(tuple(manual[name].shape))
    print(f"d{name:<3}{shape:>12}{errors.absolute:20.2e}{scale:13.2e}{errors.relative:11.2e}")
    np.testing.assert_allclose(manual[name], tape_mnist[name], **mnist_tolerance)
mnist_errors = max_errors(list(manual.values()), list(tape_mnist.values()))
print(f"all four agree within rtol={mnist_tolerance['rtol']:.0e}, atol={mnist_tolerance['atol']:.0e}")

# %% [markdown]
# ## 4. The three trainers on MNIST
#
# keras_bp trains the example three ways, from the same initial weights (seed 0) and the same
# batches:
#
# - `fit`: the recipe exactly, `model.fit(x_train, y_train, epochs=5, batch_size=128)`;
# - `tape`: a custom loop whose gradients come from `tf.GradientTape`;
# - `manual`: the same loop with the hand-written gradients of section 3, no autodiff.
#
# The example's published test accuracy after 5 epochs is 0.9777.

# %%
data_run = ((x_train, y_train), (x_test, y_test))
runs = {}
keras.backend.clear_session()
fit_config = FitConfig(epochs=EPOCHS, out=OUT / "fit", fresh=True)
_, runs["fit"] = train_fit(fit_config, data_run, verbose=0)
for gradients in ["tape", "manual"]:
    keras.backend.clear_session()
    config = LoopConfig(epochs=EPOCHS, gradients=gradients, out=OUT / gradients, fresh=True)
    _, runs[gradients] = train_loop(config, data_run, verbose=0)

print(f"{len(x_train)} training images, {len(x_test)} test images; epochs: {EPOCHS}")
print(f"{'trainer':>9}{'test accuracy':>15}{'test loss':>11}{'seconds':>9}")
for name, metrics in runs.items():
    row = f"{name:>9}{metrics['test_accuracy']:15.4f}{metrics['test_loss']:11.4f}"
    print(f"{row}{metrics['train_seconds']:9.1f}")
print(f"{'published':>9}{PUBLISHED.test_accuracy:15.4f}")

# %%
histories = {name: [metrics["history"]] for name, metrics in runs.items()}
show(figures.learning_curves(histories, OUT / "learning_curves.png"))

# %% [markdown]
# All three start from the same weights and see the same batches. `fit` applies Keras's RMSprop
# op by op; the two loops apply the same rule fused into one kernel (`keras_bp.fused`), and the
# hand-written gradients differ from the tape's in the last bits of float32 (section 3). Training
# amplifies such last-bit differences, so the three end close but not bit-identical; how far
# apart seeds land is measured over five seeds in the reproduction report.
#
# ## 5. The challenges, measured
#
# The tutorial ends with what makes backpropagation hard in practice: **overfitting**, the
# **compute** it takes, and having to **choose a suitable loss and activation**. Each is
# measured here.
#
# ### Overfitting
#
# Train the tape loop much longer, hold out the last sixth of the training images as a
# validation set, and watch both losses. Early stopping with patience 3 stops once the
# validation loss has not improved for 3 epochs, and keeps the weights of its lowest point.

# %%
keras.backend.clear_session()
overfit = seeds.overfitting_run(data_run, OUT, OVERFIT_EPOCHS, patience=3, fresh=True)
held_out = len(x_train) // 6
history = overfit["history"]
print(f"validation: the last {held_out} of {len(x_train)} training images")
print(f"lowest validation loss {min(history['val_loss']):.4f} after epoch {overfit['best_epoch']}")
print(f"training loss: {history['loss'][0]:.4f} → {history['loss'][-1]:.4f}")
print(f"validation loss at the last epoch: {history['val_loss'][-1]:.4f}")
if overfit["stopped_epoch"]:
    print(f"early stopping (patience 3) stops after epoch {overfit['stopped_epoch']}")
else:
    print(f"early stopping (patience 3) would not stop within {OVERFIT_EPOCHS} epochs")
run = f"tape loop, seed 0, validation: the last {held_out:,} of {len(x_train):,} training images"
show(
    figures.overfitting(
        history,
        overfit["best_epoch"],
        OUT / "overfitting.png",
        stopped_epoch=overfit["stopped_epoch"],
        patience=overfit["patience"],
        run=run,
    )
)

# %% [markdown]
# ### Compute
#
# How long an epoch takes, against this machine's *training floor*: the same epoch's matrix
# products and one fused RMSprop update per step, in one compiled graph with no data movement
# (`keras_bp.speed.floors`). Nothing that trains this network can go much below it. The times are
# this machine's, measured while it ran other work too, so they vary from run to
# run.

# %%
steps = steps_per_epoch(len(x_train), FitConfig().batch_size)
floor = floors.training_floor_seconds(steps)
print(f"{bench.cpu_description()}; {steps} steps per epoch")
print(f"training floor: {floor:.2f} s per epoch")
rows = []
for name, metrics in runs.items():
    per_epoch = metrics["epoch_seconds"]
    # Epoch 1 also traces and compiles the steps; the later epochs are the steady state.
    seconds = float(np.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch))
    rows.append((name, seconds / floor))
    print(f"{name:>8}: {seconds:.2f} s per epoch = {seconds / floor:.2f} × the floor")
show(figures.speed(rows, bench.cpu_description(), OUT / "speed.png"))

# %% [markdown]
# ### Choosing the loss and the activation
#
# The same network and the same batches, with the hidden layer's activation in
# {ReLU, sigmoid, tanh} and the loss in {cross-entropy, mean squared error}. The layers are
# `keras_bp.layers.ManualDense`, whose gradient is the hand-written backward of section 3, and
# `model.fit` trains them.

# %%
from keras_bp.layers import ManualDense

GRID_LOSSES = ["categorical_crossentropy", "mean_squared_error"]
grid, grid_test = {}, {}
x_grid, y_grid = x_train[:GRID_SAMPLES], y_train[:GRID_SAMPLES]
for activation in GRID_ACTIVATIONS:
    for loss_name in GRID_LOSSES:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [
                keras.Input(shape=(784,)),
                ManualDense(512, activation=activation),
                ManualDense(10, activation="softmax"),
            ]
        )
        net.compile(
            optimizer="rmsprop", loss=loss_name, metrics=["accuracy"], run_eagerly=GRID_EAGER
        )
        curve = {"seen": [], "loss": [], "accuracy": []}

        def record(batch, logs, curve=curve):
            seen = 128 * (len(curve["seen"]) + 1)  # the last batch of an epoch may be short
            curve["seen"].append(min(seen, len(x_grid) * GRID_EPOCHS))
            curve["loss"].append(logs["loss"])
            curve["accuracy"].append(logs["accuracy"])

        net.fit(
            x_grid,
            y_grid,
            epochs=GRID_EPOCHS,
            batch_size=128,
            verbose=0,
            callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=record)],
        )
        grid[activation, loss_name] = curve
        grid_test[activation, loss_name] = net.evaluate(x_test, y_test, verbose=0)

print(f"{len(x_grid)} training images, epochs: {GRID_EPOCHS}; test accuracy (test loss):")
print(f"{'hidden':>8}{'cross-entropy':>22}{'mean squared error':>24}")
for activation in GRID_ACTIVATIONS:
    cells = [grid_test[activation, loss] for loss in GRID_LOSSES]
    print(f"{activation:>8}" + "".join(f"{acc:>14.4f} ({loss:.4f})" for loss, acc in cells))
ranked = sorted(grid_test, key=lambda pair: -grid_test[pair][1])
print("by test accuracy: " + " > ".join(f"{a} + {loss}" for a, loss in ranked))

# %%
show(figures.loss_activation_grid(grid, OUT / "loss_activation_grid.png"))

# %% [markdown]
# The two losses are on different scales, so compare each within its own panel, and compare
# accuracy across them. The printed ranking is this run's. What the hand-written backward says
# to expect: the sigmoid's derivative $y(1 - y)$ is at most $1/4$, so its hidden layer passes
# back smaller gradients than ReLU's, whose derivative is 1 wherever it is active; and the mean
# squared error on a softmax output multiplies $p - y$ by the softmax's own derivative, which
# vanishes when the softmax saturates on a wrong answer, while the cross-entropy's
# $dz = (p - y)/N$ does not. The tutorial's FAQ says to choose a suitable loss and activation;
# this is what the choice changed over the same steps.
#
# ## Where to go next
#
# - [The reproduction report](../report/report.md): five seeds per trainer, their statistics
#   and figures.
# - `scripts/worked_example.py` prints section 1 from the command line; `make train`,
#   `make custom-loop` and `make manual` run the three trainers of section 4 in full.
