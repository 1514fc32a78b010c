"""parity.trajectories: each pair's weight difference after every step, in lockstep.

On the synthetic set, a few steps of batch 16: quick, and long enough for the loops' usual
chunks (4 steps per call) to differ from the trajectories' one-step chunks.
"""

import numpy as np
import pytest

from keras_bp.checks import parity
from keras_bp.config import LOOP_SPEED, Speed

PAIRS = ["fit vs tape", "fit vs manual", "tape vs manual"]
STEPS, BATCH, SEED = 6, 16, 2


@pytest.mark.parametrize(
    "speed",
    [
        LOOP_SPEED,
        # Slow: the same trajectories with Keras's op-by-op RMSprop (fast: test_fused.py holds
        # the fused and op-by-op trainers to each other step by step).
        pytest.param(Speed(steps_per_call=4, fused=False), marks=pytest.mark.slow),
        # Slow: XLA compiles six programs (seconds). Fast, the same code under XLA: XLA's padded
        # chunks train as unpadded ones (test_loop.py::test_xla_chunks_padded_to_one_shape_…).
        pytest.param(Speed(steps_per_call=4, xla=True), marks=pytest.mark.slow),
    ],
    ids=["shipped (fused)", "no-fused", "xla"],
)
def test_last_point_is_the_parity_table_of_train_in_lockstep(synthetic_data, speed):
    (x, y), _ = synthetic_data
    trajectories = parity.trajectories(x, y, STEPS, BATCH, SEED, speed)
    rows, moved = parity.parity_table(parity.train_in_lockstep(x, y, STEPS, BATCH, SEED, speed))
    assert list(trajectories) == PAIRS == [pair for pair, _ in rows]
    for pair, difference in rows:
        points = trajectories[pair]
        assert points.shape == (STEPS,)
        assert np.all(np.isfinite(points)) and np.all(points >= 0)
        # Measured bit-identical: the same start, batches, models and kernels, step for step.
        np.testing.assert_allclose(points[-1], difference, rtol=1e-9, atol=1e-12)
    assert moved > 1e-3  # training really moved the weights


def test_tape_and_manual_agree_to_rounding_after_one_step(synthetic_data):
    (x, y), _ = synthetic_data
    trajectories = parity.trajectories(x, y, STEPS, BATCH, SEED)
    assert trajectories["tape vs manual"][0] <= 1e-6
    assert trajectories["fit vs tape"][0] <= 1e-6


def test_more_steps_than_the_epoch_holds_are_rejected(synthetic_data):
    (x, y), _ = synthetic_data
    with pytest.raises(ValueError, match="steps \\* batch_size = 272 exceeds the 256 samples"):
        parity.trajectories(x, y, 17, BATCH)
