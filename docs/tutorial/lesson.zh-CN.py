# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 反向传播，一步一步跑出来
#
# *English: [lesson.ipynb](lesson.ipynb)*
#
# 这个笔记本就是 keras_bp 复现的那堂课，按原教程讲解的顺序展开，每一个数字都由 keras_bp 自己算出：
# `keras_bp.backprop` 里手写的反向传播、`keras_bp.training` 里的训练器、`keras_bp.data` 提供的
# MNIST。这里没有把数学再抄写一遍：每个单元格调用的都是测试检查过的那个包。
#
# 反向传播分**两个阶段**：*前向传播*算出输出和损失；*反向传播*把损失的梯度从输出层传回每一个权重。训练重复**四个步骤**：
#
# 1. **前向**：每一层计算 $y = f(w \cdot x + b)$。
# 2. **损失**：把 $y$ 与目标比较，例如均方误差 $L = \frac{1}{N}\sum (y - t)^2$，或交叉熵
#    $L = -\sum_i t_i \log y_i$。
# 3. **反向**：用链式法则从输出层往回求梯度 $\partial L/\partial w$ 和 $\partial L/\partial b$，然后更新 $w \leftarrow w - \eta\,\partial L/\partial w$。
# 4. **重复**，直到损失收敛。
#
# 下面的规模是完整课程的规模。测试会设置 `KERAS_BP_TUTORIAL_SMALL=1`（或各项规模各自的环境变量），在 MNIST 的一小部分上运行同一个笔记本。

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
# ## 准备
#
# TensorFlow 安静地启动（`keras_bp.runtime.tensorflow_start`）；每次训练都写入一个临时文件夹，每张图都由 `keras_bp.report.figures` 绘制。

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
# ## 1. 一个神经元，手算
#
# 最小的网络：两个输入 $x_1, x_2$，权重 $w_1, w_2$，偏置 $b$，经过 sigmoid
# $\sigma(z) = 1/(1 + e^{-z})$ 得到一个输出，再与目标 $t$ 算平方误差：
#
# $$z = w_1 x_1 + w_2 x_2 + b, \qquad y = \sigma(z), \qquad L = (y - t)^2.$$
#
# 具体数字：$x = (0.5, -1.0)$，$w = (0.3, 0.8)$，$b = 0.1$，$t = 1$，学习率 $\eta = 0.5$；用 float64 计算，舍入误差远小于打印出的位数。

# %%
x = np.array([[0.5, -1.0]])  # (N, D) = (1, 2): x1, x2
w = np.array([[0.3], [0.8]])  # (D, M) = (2, 1): w1, w2
b = np.array([0.1])  # (M,)
target = np.array([[1.0]])  # (N, M)
learning_rate = 0.5  # η

# %% [markdown]
# ### 前向与损失
#
# `backprop.dense_forward` 计算 $y = f(w \cdot x + b)$，并保存反向传播要用的中间量；
# `backprop.mean_squared_error` 返回损失和 $\partial L/\partial y$。

# %%
y, cache = backprop.dense_forward(x, w, b, activation="sigmoid")
loss, dy = backprop.mean_squared_error(target, y)
z = (x @ w + b)[0, 0]
print(f"z = w1·x1 + w2·x2 + b = 0.3·0.5 + 0.8·(-1.0) + 0.1 = {z:+.10f}")
print(f"y = σ(z) = 1 / (1 + e^-z)                        = {y[0, 0]:.10f}")
print(f"L = (y - t)²                                       = {loss:.10f}")

# %% [markdown]
# ### 反向：链式法则
#
# 原教程中这个神经元的反向传播一节是空着的；这里把它补上，一次一个因子。
#
# 损失只通过 $z$ 依赖 $w_1$，而 $z$ 只通过 $y$ 影响损失。所以
#
# $$\frac{\partial L}{\partial w_1} = \frac{\partial L}{\partial y}\cdot\frac{\partial y}{\partial z}\cdot\frac{\partial z}{\partial w_1},$$
#
# $$\frac{\partial L}{\partial y} = 2(y - t), \qquad \frac{\partial y}{\partial z} = \sigma(z)\,(1 - \sigma(z)) = y(1 - y),$$
#
# $$\frac{\partial z}{\partial w_1} = x_1, \qquad \frac{\partial z}{\partial w_2} = x_2, \qquad \frac{\partial z}{\partial b} = 1.$$
#
# 下面先打印每个因子，手工相乘；再用 `backprop.dense_backward`（keras_bp 每个训练器都用的函数）算一遍；最后用 `tf.GradientTape` 对前向计算本身求导，三者并排对照。

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
# ### 更新一步
#
# 梯度下降让每个参数沿梯度的反方向移动：$w \leftarrow w - \eta\,\partial L/\partial w$，
# $b \leftarrow b - \eta\,\partial L/\partial b$。更新之后损失变小了。

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
# ## 2. 重复，直到损失收敛
#
# **停止规则**：某一步的损失比上一步下降不到 $10^{-6}$ 时就停止（最多 100,000 步，实际远用不到）。

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
# 损失先快后慢地下降：当 $y \to 1$ 时 sigmoid 趋于饱和，每个梯度里的因子 $y(1 - y)$ 也随之趋于零。
#
# ## 3. 两层网络：MNIST 网络的反向传播
#
# Keras MNIST 示例的网络：$784 \to$ Dense(512, ReLU) $\to$ Dense(10, softmax)，损失为分类交叉熵。对一个稠密层 $y = f(z)$，$z = x W + b$，一个批次 $x$ 的形状为 $(N, D)$，反向传播就是四个公式：
#
# $$dz = dy \odot f'(z), \qquad dW = x^\top dz, \qquad db = \textstyle\sum_n dz_n, \qquad dx = dz\,W^\top.$$
#
# 输出层的 softmax 与交叉熵合在一起，化简为 $dz_2 = (p - y)/N$，其中 $p$ 是 softmax 给出的概率，
# $y$ 是独热标签。上一层的 $dx$ 就是下一层的 $dy$：这一次交接，就是反向传播的全部。

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
# ## 4. MNIST 上的三种训练方式
#
# keras_bp 用三种方式训练这个示例，初始权重相同（种子 0），批次也相同：
#
# - `fit`：原样照搬教程，`model.fit(x_train, y_train, epochs=5, batch_size=128)`；
# - `tape`：自定义训练循环，梯度来自 `tf.GradientTape`；
# - `manual`：同一个循环，梯度用第 3 节手写的反向传播算出，不用自动微分。
#
# 示例公开的 5 轮后测试准确率是 0.9777。

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
# 三者从相同的权重出发，看到相同的批次。`fit` 逐个算子地执行 Keras 的 RMSprop；两个循环执行的是同一条规则，只是融合成一个内核（`keras_bp.fused`）；手写梯度与自动微分的梯度在 float32 的最后几位上有差别（第 3 节）。训练会放大这些末位差别，所以三者的结果接近但并非逐位相同；不同随机种子之间差多少，见复现报告里每种方式 5 个种子的统计。
#
# ## 5. 教程提到的难点，实测
#
# 原教程最后讲到反向传播在实践中的难处：**过拟合**、所需的**计算量**，以及必须**选择合适的损失函数和激活函数**。下面逐一实测。
#
# ### 过拟合
#
# 让 tape 循环训练更多轮，把训练图像的最后六分之一留作验证集，同时观察两条损失曲线。patience 为 3
# 的早停：验证损失连续 3 轮没有改善就停止，并保留验证损失最低那一轮的权重。

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
# ### 计算量
#
# 每一轮训练用多长时间，与本机的*训练下限*相比：同一轮里的矩阵乘法，加上每步一次融合的 RMSprop
# 更新，放在一个编译好的计算图里、不搬运数据（`keras_bp.speed.floors`）。训练这个网络的任何方法都很难比它快多少。这些时间是本机测得的，测量时机器上还有别的任务，所以每次运行会有差别。

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
# ### 选择损失函数和激活函数
#
# 同样的网络、同样的批次，隐藏层激活函数取 {ReLU, sigmoid, tanh}，损失取 {交叉熵, 均方误差}。网络层是 `keras_bp.layers.ManualDense`，其梯度就是第 3 节手写的反向传播，由 `model.fit` 训练。

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
# 两种损失的数值尺度不同，所以损失只在各自的面板内比较，跨损失则比较准确率。打印出的排名是这一次运行的结果。手写的反向传播告诉我们该预期什么：sigmoid 的导数 $y(1 - y)$ 最大只有 $1/4$，所以它的隐藏层传回的梯度比 ReLU 小（ReLU 在激活处导数为 1）；而 softmax 输出上的均方误差，要把 $p - y$
# 再乘以 softmax 自身的导数，当 softmax 对错误答案饱和时这个导数趋于零，交叉熵的
# $dz = (p - y)/N$ 则不会。原教程的常见问题里说要选择合适的损失函数和激活函数；这里就是在相同步数下，这个选择带来的差别。
#
# ## 接下来
#
# - [复现报告](../report/report.md)：每种训练方式 5 个随机种子的统计与图表。
# - `scripts/worked_example.py` 在命令行里演示第 1 节；`make train`、`make custom-loop` 和
#   `make manual` 完整地运行第 4 节的三种训练方式。
# - 中文首页：[README.zh-CN.md](../../README.zh-CN.md)。
