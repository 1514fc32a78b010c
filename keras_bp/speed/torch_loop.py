"""The recipe as a PyTorch user writes it: `nn.Sequential`, `F.cross_entropy`, eager steps.

No Keras. The model is `Linear(784, 512)`, `ReLU`, `Linear(512, 10)` (the softmax is in the
loss), and the loop is the usual `zero_grad`, `backward`, `step`. The optimizer is Keras's
RMSprop, not `torch.optim.RMSprop`, whose rule and defaults differ:

    Keras:  v ← ρ·v + (1 − ρ)·g²;  w ← w − lr·g / √(v + ε)       ρ = 0.9,  ε = 1e-7
    torch:  v ← α·v + (1 − α)·g²;  w ← w − lr·g / (√v + ε)       α = 0.99, ε = 1e-8

Each epoch sees keras_bp's batches (`keras_bp.data.batches`): the same samples in the same
order as the shipped loops and `fit`. `make bench` times it against the training floor
(`keras_bp.speed.peers`).
"""

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from keras_bp.data.batches import epoch_batches, epoch_permutation

# keras.optimizers.RMSprop's defaults, as the recipe uses them (a test checks they still are).
LEARNING_RATE, RHO, EPSILON = 1e-3, 0.9, 1e-7


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop with Keras's update: `w ← w − lr·g / √(v + ε)`, no momentum, not centered."""

    def __init__(self, params, lr=LEARNING_RATE, rho=RHO, eps=EPSILON):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                v = self.state[w].setdefault("square_avg", torch.zeros_like(w))
                v.mul_(rho).addcmul_(g, g, value=1 - rho)
                # epsilon inside the square root, as keras.optimizers.RMSprop does
                w.addcdiv_(g, (v + eps).sqrt_(), value=-lr)


def build_model(initial_weights):
    """The tutorial's network holding `initial_weights` `[W1 (784, 512), b1, W2 (512, 10), b2]`
    (Keras's layout: `nn.Linear` keeps each kernel transposed, `(out, in)`)."""
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    w1, b1, w2, b2 = (torch.from_numpy(np.asarray(w, np.float32)) for w in initial_weights)
    with torch.no_grad():
        for layer, kernel, bias in [(model[0], w1, b1), (model[2], w2, b2)]:
            layer.weight.copy_(kernel.T)
            layer.bias.copy_(bias)
    return model


def train(initial_weights, x_train, y_train, epochs, batch_size=128, seed=0):
    """Train from `initial_weights` on `x_train: (N, 784)`, one-hot `y_train: (N, 10)`.

    Returns `(model, history)`: the trained `nn.Sequential` and `{"loss": [...], "seconds":
    [...]}` per epoch.
    """
    model = build_model(initial_weights)
    optimizer = KerasRMSprop(model.parameters())
    x = torch.from_numpy(np.asarray(x_train, np.float32))
    labels = torch.from_numpy(np.argmax(y_train, axis=1))  # class indices, as torch takes them
    history = {"loss": [], "seconds": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        loss_sum = 0.0
        for batch in epoch_batches(epoch_permutation(seed, epoch, len(x)), batch_size):
            batch = torch.from_numpy(batch)
            loss = F.cross_entropy(model(x[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
        history["loss"].append(loss_sum / len(x))
        history["seconds"].append(time.perf_counter() - start)
    return model, history


@torch.no_grad()
def evaluate(model, x_test, y_test) -> float:
    """The test accuracy: the fraction of rows whose argmax of the logits is the label's."""
    logits = model(torch.from_numpy(np.asarray(x_test, np.float32)))
    return (logits.argmax(1) == torch.from_numpy(np.argmax(y_test, axis=1))).float().mean().item()


def weights(model) -> list:
    """The model's weights as numpy arrays in Keras's layout, `[W1, b1, W2, b2]`."""
    first, last = model[0], model[2]
    return [
        t.detach().numpy().copy() for t in (first.weight.T, first.bias, last.weight.T, last.bias)
    ]
