"""Which samples each training step sees: one shuffle per epoch, fixed by `(seed, epoch)`.

The reference loop and the compiled loop both take their batches from here, so they see the same
samples in the same order, and a resumed run sees what an uninterrupted one would have seen.
"""

import numpy as np


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the `n` training samples in `epoch`: a function of `(seed, epoch)` only."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def epoch_batches(perm: np.ndarray, batch_size: int):
    """Yield each batch's sample indices in order; the last batch is partial when
    `batch_size` does not divide the epoch (60000 = 468·128 + 96)."""
    for start in range(0, len(perm), batch_size):
        yield perm[start : start + batch_size]


def epoch_chunks(perm: np.ndarray, batch_size: int, start_step: int, steps_per_call: int):
    """Yield `(first_step, indices)` with indices `(steps, batch)`, from `start_step` on.

    The same batches as `epoch_batches`, grouped for compiled calls: full batches in chunks of
    up to `steps_per_call` steps; a final partial batch alone, as a `(1, n mod batch_size)` chunk.
    """
    full_steps, remainder = divmod(len(perm), batch_size)
    step = start_step
    while step < full_steps:
        stop = min(step + steps_per_call, full_steps)
        yield step, perm[step * batch_size : stop * batch_size].reshape(stop - step, batch_size)
        step = stop
    if remainder and step == full_steps:
        yield step, perm[full_steps * batch_size :].reshape(1, remainder)


def first_row(indices: np.ndarray) -> int | None:
    """`indices[0, 0]` when `indices` (steps, batch) numbers consecutive rows in order, else None.

    Then step i's batch is the slice of rows `[first + i·batch, first + (i+1)·batch)`: what the
    loop's chunks are over an epoch's permuted copy, read in order.
    """
    flat = indices.ravel()
    if flat.size == 0:
        return None
    first = int(flat[0])
    return first if np.array_equal(flat, np.arange(first, first + flat.size)) else None
