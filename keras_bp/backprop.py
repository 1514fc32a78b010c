"""Backpropagation by hand: forward/backward pairs, no autodiff anywhere.

A layer computes `y = f(w·x + b)`; its backward takes `dy = ∂L/∂y` and returns
`dx, dw, db`, so that one step of gradient descent is `w ← w − η·∂L/∂w`.

Every forward returns `(out, cache)` and its backward takes `(d_out, cache)`. All functions
are written with `keras.ops`, so the same code runs on every Keras backend (TensorFlow, JAX,
PyTorch), eagerly and inside a compiled step (`tf.function`, `jax.jit`). They accept numpy arrays
or the backend's tensors of one floating dtype (float32 or float64) and return the backend's
tensors of that dtype.
"""

import keras
from keras import ops


def _as_tensors(**named):
    """Convert each argument to a tensor and check they share one floating dtype."""
    tensors = {name: ops.convert_to_tensor(value) for name, value in named.items()}
    dtypes = {name: keras.backend.standardize_dtype(t.dtype) for name, t in tensors.items()}
    if not all(dtype.startswith(("float", "bfloat")) for dtype in dtypes.values()):
        raise ValueError(f"expected floating tensors (float32 or float64), received {dtypes}")
    if len(set(dtypes.values())) > 1:
        raise ValueError(f"expected one dtype for all arguments, received {dtypes}")
    return tuple(tensors.values())


def _check_shape(name, tensor, expected):
    shape = tuple(tensor.shape)  # a dimension unknown until run time is None, matching any
    if len(shape) != len(expected) or any(
        known is not None and want is not None and known != want
        for known, want in zip(shape, expected, strict=True)
    ):
        raise ValueError(f"{name}: expected shape {tuple(expected)}, received {shape}")


# Affine: z = x·w + b.  x: (N, D), w: (D, M), b: (M,), z: (N, M).


def affine_forward(x, w, b):
    """z = x·w + b, returning `(z, cache)`."""
    x, w, b = _as_tensors(x=x, w=w, b=b)
    _check_shape("w", w, [None, None])
    _check_shape("x", x, [None, w.shape[0]])
    _check_shape("b", b, [w.shape[1]])
    # `@`, each backend's own matmul: keras.ops.matmul computes float64 in float32 on PyTorch.
    z = x @ w + b  # (N, M): b broadcasts over the batch
    return z, (x, w)


def affine_backward(dz, cache, input_grad=True):
    """dx = dz·wᵀ, dw = xᵀ·dz, db = Σ_n dz, returning `(dx, dw, db)`.

    With `input_grad=False`, dx is `None`: the first layer's dx (∂L/∂ of the data) is not
    needed for training, and skipping it saves one of the layer's three large products.
    """
    x, w = cache
    dz, _ = _as_tensors(dz=dz, x=x)
    _check_shape("dz", dz, [x.shape[0], w.shape[1]])
    dx = dz @ ops.transpose(w) if input_grad else None  # (N, D)
    dw = ops.transpose(x) @ dz  # (D, M)
    db = ops.sum(dz, axis=0)  # (M,)
    return dx, dw, db


# Activations: a = f(z), dz = ∂L/∂a · f'(z).  Each forward returns `(a, cache)`.


def linear_forward(z):
    return z, ()


def linear_backward(da, cache):
    return da


def relu_forward(z):
    """a = max(0, z).

    The textbook caches z; this caches a, which says the same (a > 0 exactly where z > 0). With
    z used by nothing else, TensorFlow fuses the matmul, bias add and max into one kernel.
    """
    a = ops.relu(z)
    return a, a


def relu_backward(da, a):
    """dz = da · 1[z > 0]; the kink at 0 gets gradient 0, as `keras.ops.relu` gives.

    As a = max(0, z) ≥ 0, the indicator 1[z > 0] equals sign(a): the code writes it that way
    because it is one elementwise op instead of a comparison and a cast (README, Speed).
    """
    return da * ops.sign(a)


def sigmoid_forward(z):
    """a = σ(z) = 1 / (1 + e^−z)."""
    # Written out: `keras.ops.sigmoid` tags its output with z (`_keras_logits`), and Keras's
    # losses would then read z instead of a.
    a = 1 / (1 + ops.exp(-z))
    return a, a


def sigmoid_backward(da, a):
    """dz = da · σ(z)·(1 − σ(z))."""
    return da * a * (1 - a)


def tanh_forward(z):
    """a = tanh(z) = (e^z − e^−z) / (e^z + e^−z) = 1 − 2 / (e^{2z} + 1)."""
    # Written out: keras.ops.tanh computes in float32 on JAX even for float64 z.
    a = 1 - 2 / (ops.exp(2 * z) + 1)
    return a, a


def tanh_backward(da, a):
    """dz = da · (1 − tanh²(z))."""
    return da * (1 - a * a)


def softmax_forward(z):
    """p_i = e^{z_i} / Σ_j e^{z_j} over the last axis; the row max is subtracted so e^z
    cannot overflow (softmax is unchanged by a shift)."""
    e = ops.exp(z - ops.max(z, axis=-1, keepdims=True))  # (N, M)
    p = e / ops.sum(e, axis=-1, keepdims=True)
    return p, p


def softmax_backward(dp, p):
    """The vector-Jacobian product of softmax: dz = p · (dp − Σ_j dp_j·p_j)."""
    return p * (dp - ops.sum(dp * p, axis=-1, keepdims=True))  # (N, M)


ACTIVATIONS = {
    "linear": (linear_forward, linear_backward),
    "relu": (relu_forward, relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "softmax": (softmax_forward, softmax_backward),
}


def _activation_pair(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def activation_forward(z, name):
    """a = f(z) for the activation called `name`, returning `(a, cache)`."""
    forward, _ = _activation_pair(name)
    (z,) = _as_tensors(z=z)
    a, cache = forward(z)
    return a, (name, z, cache)


def activation_backward(da, cache):
    """dz = ∂L/∂a · f'(z) (for softmax, the full vector-Jacobian product)."""
    name, z, inner = cache
    da, _ = _as_tensors(da=da, z=z)
    _check_shape("da", da, z.shape)
    return _activation_pair(name)[1](da, inner)


# Dense: y = f(x·w + b).


def dense_forward(x, w, b, activation="linear"):
    """y = f(x·w + b) with x: (N, D), w: (D, M), b: (M,), y: (N, M); returns `(y, cache)`."""
    _activation_pair(activation)
    z, affine_cache = affine_forward(x, w, b)
    y, activation_cache = activation_forward(z, activation)
    return y, (affine_cache, activation_cache)


def dense_backward(dy, cache, input_grad=True):
    """Given dy = ∂L/∂y: (N, M), returns `(dx, dw, db)` with the shapes of x, w, b."""
    affine_cache, activation_cache = cache
    dz = activation_backward(dy, activation_cache)
    return affine_backward(dz, affine_cache, input_grad)


# A stack of dense layers: forward layer by layer, backward in reverse.


def network_forward(x, params, activations):
    """y = f_L(… f_1(x·w1 + b1) …) for params `[w1, b1, w2, b2, …]`; returns `(y, caches)`."""
    if len(params) != 2 * len(activations) or any(isinstance(p, tuple | list) for p in params):
        raise ValueError(
            f"params: expected a flat list [w1, b1, w2, b2, …] of {2 * len(activations)} arrays "
            f"for {len(activations)} layers, received {len(params)} items "
            f"({', '.join(type(p).__name__ for p in params)})"
        )
    caches = []
    for i, activation in enumerate(activations):
        x, cache = dense_forward(x, params[2 * i], params[2 * i + 1], activation)
        caches.append(cache)
    return x, caches


def network_backward(dy, caches, input_grad=True):
    """Given dy = ∂L/∂y, returns `(dx, [dw1, db1, dw2, db2, …])`.

    Each layer's dx is the dy of the layer before it: that is the whole of backpropagation.
    `input_grad=False` skips the first layer's dx (returned as `None`), which training never uses.
    """
    grads = []
    for i in reversed(range(len(caches))):
        dy, dw, db = dense_backward(dy, caches[i], input_grad or i > 0)
        grads = [dw, db, *grads]
    return dy, grads


# Losses, Keras conventions: a mean over the batch; each returns `(loss, dy_pred)`.


def mean_squared_error(y_true, y_pred):
    """L = mean_n mean_m (y_pred − y_true)², dy_pred = 2·(y_pred − y_true) / (N·M)."""
    y_true, y_pred = _as_tensors(y_true=y_true, y_pred=y_pred)
    _check_shape("y_pred", y_pred, y_true.shape)
    diff = y_pred - y_true
    count = ops.cast(ops.size(diff), diff.dtype)
    return ops.sum(diff * diff) / count, 2 * diff / count


def categorical_crossentropy(y_true, y_pred):
    """L = mean_n −Σ_i y_i·log clip(p_i / Σ_j p_j, ε, 1 − ε), ε = `keras.config.epsilon()`.

    This is `keras.losses.categorical_crossentropy` on probabilities, term for term,
    including the renormalisation and the clip (zero gradient where the clip is active).
    Keras takes another path when `y_pred` is a Keras softmax activation's output: that
    tensor carries `_keras_logits`, and Keras computes the loss from those logits, which is
    `softmax_crossentropy` below (no renormalisation, no clip).
    y_true, y_pred: (N, M).
    """
    y_true, y_pred = _as_tensors(y_true=y_true, y_pred=y_pred)
    _check_shape("y_pred", y_pred, y_true.shape)
    _check_shape("y_true", y_true, [None, None])
    n = ops.cast(ops.shape(y_true)[0], y_true.dtype)
    eps = keras.config.epsilon()
    total = ops.sum(y_pred, axis=-1, keepdims=True)  # (N, 1)
    q = y_pred / total  # (N, M)
    c = ops.clip(q, eps, 1 - eps)
    loss = -ops.sum(y_true * ops.log(c)) / n
    # Backwards through the three steps: log, clip (gradient passes inside [ε, 1 − ε]),
    # then q = p / s, whose vector-Jacobian product is dp = (dq − Σ_j dq_j·q_j) / s.
    dq = -y_true / c / n * ops.cast(ops.logical_and(q >= eps, q <= 1 - eps), q.dtype)
    dy_pred = (dq - ops.sum(dq * q, axis=-1, keepdims=True)) / total
    return loss, dy_pred


LOSSES = {
    "categorical_crossentropy": categorical_crossentropy,
    "mean_squared_error": mean_squared_error,
}


def get_loss(name):
    """The loss function called `name`: `(y_true, y_pred) -> (loss, dy_pred)`."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; supported: {sorted(LOSSES)}")
    return LOSSES[name]


# Softmax and cross-entropy fused: the two backward steps collapse to dz = (p − y) / N.


def softmax_crossentropy_backward(y_true, p):
    """dz = (p − y_true) / N for p = softmax(z), y_true and p: (N, M)."""
    y_true, p = _as_tensors(y_true=y_true, p=p)
    _check_shape("p", p, y_true.shape)
    return (p - y_true) / ops.cast(ops.shape(p)[0], p.dtype)


def softmax_crossentropy(y_true, logits):
    """L = mean_n −Σ_i y_i·log softmax(z)_i from logits z: (N, M); returns `(loss, dz)`.

    What Keras computes for a softmax layer's output (no clip): log softmax(z) is
    z − max z − log Σ e^{z − max z}, which stays finite however confident the model is.
    """
    y_true, logits = _as_tensors(y_true=y_true, logits=logits)
    _check_shape("logits", logits, y_true.shape)
    _check_shape("y_true", y_true, [None, None])
    shifted = logits - ops.max(logits, axis=-1, keepdims=True)  # (N, M)
    log_p = shifted - ops.log(ops.sum(ops.exp(shifted), axis=-1, keepdims=True))
    # A sum over N: keras.ops.mean computes in float32 off TensorFlow, even for float64.
    loss = -ops.sum(y_true * log_p) / ops.cast(ops.shape(logits)[0], logits.dtype)
    return loss, softmax_crossentropy_backward(y_true, ops.exp(log_p))
