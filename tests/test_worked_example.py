"""scripts/worked_example.py prints its inputs first, and its hand gradients are the tape's."""

import re
import runpy
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

NUMBER = r"(-?[\d.]+)"
INPUTS = re.compile(
    rf"\Ax = \(x1, x2\) = \({NUMBER}, {NUMBER}\)\n"
    rf"w = \(w1, w2\) = \({NUMBER}, {NUMBER}\), b = {NUMBER}\n"
    rf"target = {NUMBER}, learning rate η = {NUMBER}\n"
)
VALUE_LINE = re.compile(r"^(z|y|L|∂L/∂y|∂y/∂z) .*= (\S+)$", re.MULTILINE)
GRADIENT_LINE = re.compile(r"^∂L/∂(\w+)\s+by hand = (\S+)\s+tape = (\S+)$", re.MULTILINE)
STEP_LINE = re.compile(
    rf"^after one step: w1 = {NUMBER}, w2 = {NUMBER}, b = {NUMBER}$", re.MULTILINE
)
LOSS_LINE = re.compile(r"^step (\d+): loss = (\S+)$", re.MULTILINE)


def test_worked_example_can_be_followed_by_hand(monkeypatch, capsys):
    """The script run in this process (TensorFlow has started), checked two ways below."""
    monkeypatch.setattr(sys, "argv", ["worked_example.py"])
    runpy.run_path(str(ROOT / "scripts" / "worked_example.py"), run_name="__main__")
    output = capsys.readouterr().out
    check_hand_gradients_match_tape(output)
    check_printed_inputs_reproduce_every_number(output)


@pytest.mark.slow  # a start of TensorFlow; fast, test_quiet_start.py checks the quiet start
def test_worked_example_runs_quietly_as_a_command():
    proc = run_script("scripts/worked_example.py", timeout=120)
    assert proc.returncode == 0, proc.stderr
    # None of TensorFlow's start-up lines (keras_bp.runtime.tensorflow_start).
    assert proc.stderr == ""
    check_hand_gradients_match_tape(proc.stdout)


def check_hand_gradients_match_tape(output):
    gradients = GRADIENT_LINE.findall(output)
    assert [name for name, _, _ in gradients] == ["w1", "w2", "b"]
    by_hand = np.array([float(h) for _, h, _ in gradients])
    tape = np.array([float(t) for _, _, t in gradients])
    # Printed with 12 decimals, so agreement is checked to that precision.
    np.testing.assert_allclose(by_hand, tape, rtol=0, atol=1e-12)
    assert np.all(np.abs(by_hand) > 1e-3)  # a real gradient, not a row of zeros
    losses = [float(loss) for _, loss in LOSS_LINE.findall(output)]
    assert len(losses) == 6
    assert np.all(np.diff(losses) < 0), losses


def check_printed_inputs_reproduce_every_number(output):
    """The inputs come first, and they alone reproduce every printed number by hand."""
    match = INPUTS.match(output)
    assert match, output[:300]
    x1, x2, w1, w2, b, target, eta = map(float, match.groups())
    values = dict(VALUE_LINE.findall(output))
    z = w1 * x1 + w2 * x2 + b
    y = 1 / (1 + np.exp(-z))
    dy, dz_factor = 2 * (y - target), y * (1 - y)
    expected = {"z": z, "y": y, "L": (y - target) ** 2, "∂L/∂y": dy, "∂y/∂z": dz_factor}
    for name, value in expected.items():
        np.testing.assert_allclose(float(values[name]), value, rtol=0, atol=1e-9, err_msg=name)
    grads = [dy * dz_factor * x1, dy * dz_factor * x2, dy * dz_factor]
    by_hand = [float(h) for _, h, _ in GRADIENT_LINE.findall(output)]
    np.testing.assert_allclose(by_hand, grads, rtol=0, atol=1e-11)
    stepped = [float(v) for v in STEP_LINE.search(output).groups()]
    np.testing.assert_allclose(
        stepped, [p - eta * g for p, g in zip([w1, w2, b], grads, strict=True)], rtol=0, atol=1e-9
    )


@pytest.mark.parametrize(
    "how",
    [
        # Slow: a second start of TensorFlow each; fast, test_quiet_start.py checks what
        # KERAS_BP_VERBOSE (which --verbose sets) does to TensorFlow's log level.
        pytest.param("--verbose", marks=pytest.mark.slow),
        pytest.param("KERAS_BP_VERBOSE=1", marks=pytest.mark.slow),
    ],
)
def test_verbose_shows_tensorflows_start_up_lines_again(how, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # as in a user's shell
    if how.startswith("KERAS_BP_VERBOSE"):
        monkeypatch.setenv("KERAS_BP_VERBOSE", "1")
        loud = run_script("scripts/worked_example.py", timeout=120)
    else:
        loud = run_script("scripts/worked_example.py", how, timeout=120)
    assert loud.returncode == 0 and "∂L/∂w1" in loud.stdout
    assert "oneDNN" in loud.stderr or "cuda" in loud.stderr.lower(), loud.stderr[:500]
