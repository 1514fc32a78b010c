"""scripts/worked_example.py runs, and its hand gradients are the tape's."""

import re

import numpy as np
import pytest
from conftest import run_script

GRADIENT_LINE = re.compile(r"^∂L/∂(\w+)\s+by hand = (\S+)\s+tape = (\S+)$", re.MULTILINE)
LOSS_LINE = re.compile(r"^step (\d+): loss = (\S+)$", re.MULTILINE)


def test_worked_example_hand_gradients_match_tape():
    proc = run_script("scripts/worked_example.py", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stderr == ""
    )  # none of TensorFlow's start-up lines (keras_bp.runtime.tensorflow_start)
    gradients = GRADIENT_LINE.findall(proc.stdout)
    assert [name for name, _, _ in gradients] == ["w1", "w2", "b"]
    by_hand = np.array([float(h) for _, h, _ in gradients])
    tape = np.array([float(t) for _, _, t in gradients])
    # Printed with 12 decimals, so agreement is checked to that precision.
    np.testing.assert_allclose(by_hand, tape, rtol=0, atol=1e-12)
    assert np.all(np.abs(by_hand) > 1e-3)  # a real gradient, not a row of zeros
    losses = [float(loss) for _, loss in LOSS_LINE.findall(proc.stdout)]
    assert len(losses) == 6
    assert np.all(np.diff(losses) < 0), losses


@pytest.mark.parametrize("how", ["--verbose", "KERAS_BP_VERBOSE=1"])
def test_verbose_shows_tensorflows_start_up_lines_again(how, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # as in a user's shell
    if how.startswith("KERAS_BP_VERBOSE"):
        monkeypatch.setenv("KERAS_BP_VERBOSE", "1")
        loud = run_script("scripts/worked_example.py", timeout=120)
    else:
        loud = run_script("scripts/worked_example.py", how, timeout=120)
    assert loud.returncode == 0 and "∂L/∂w1" in loud.stdout
    assert "oneDNN" in loud.stderr or "cuda" in loud.stderr.lower(), loud.stderr[:500]
