"""make gradient-check: one metric, each tolerance, a verdict per row, exit 1 on FAIL."""

import itertools
import runpy
import sys

import pytest
from conftest import ROOT

from keras_bp.checks import gradcheck
from keras_bp.runtime import backend_start


def test_the_tolerances_are_the_gradient_tests_own():
    """Defined once: the script, the report and the tests all read these."""
    rtol = {label: tolerance["rtol"] for label, (_, _, tolerance) in gradcheck.COMPARISONS.items()}
    assert rtol == {"float32 vs tape": 1e-5, "float64 vs tape": 1e-12, "float64 vs numerical": 1e-7}
    assert gradcheck.COMPARISONS["float32 vs tape"][2] is gradcheck.TOLERANCES["float32"]
    assert gradcheck.COMPARISONS["float64 vs numerical"][2] is gradcheck.NUMERICAL_TOLERANCE


def test_a_wrong_gradient_fails_its_row_and_a_right_one_passes():
    def cases(dtype, scale):
        case = gradcheck.activation_case("sigmoid", 4, 3, dtype)
        return [case, gradcheck.Case("wrong", case.params, case.loss_fn, [case.manual[0] * scale])]

    rows = gradcheck.check({dtype: cases(dtype, 1.001) for dtype in ("float32", "float64")})
    assert [(row.name, row.passed) for row in rows] == [("sigmoid", True), ("wrong", False)]
    # 0.1% off is far outside every tolerance, and the error says by how much.
    # (Near-zero entries are measured against atol/rtol + |r|, so a few read a little less.)
    for label, error in rows[1].errors.items():
        assert 5e-4 < error <= 1e-3 * (1 + 1e-6), (label, error)
    assert not gradcheck.within_tolerance({"float64 vs tape": float("nan")})


def test_the_script_prints_each_tolerance_and_exits_1_on_fail(monkeypatch, capsys):
    """The script, run in this process (TensorFlow already started), with the float64 tape
    tolerance tightened past float64's rounding."""
    tolerance = gradcheck.COMPARISONS["float64 vs tape"][2]
    monkeypatch.setitem(tolerance, "rtol", 1e-17)
    monkeypatch.setitem(tolerance, "atol", 1e-19)
    monkeypatch.setattr(sys, "argv", ["gradient_check.py"])
    # The second table, each backend's autodiff (a process per backend), is not this test's
    # subject: every backend reads as not installed, so the first table decides the exit code.
    monkeypatch.setattr(backend_start, "installed", lambda backend: False)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "scripts" / "gradient_check.py"), run_name="__main__")
    assert exit_.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    tolerances = next(line for line in lines if line.startswith("tolerance"))
    assert "rtol 1e-05, atol 1e-06" in tolerances and "rtol 1e-17, atol 1e-19" in tolerances
    assert "rtol 1e-07, atol 1e-08" in tolerances
    # The first table, the cases on this process's backend: up to the first blank line.
    first_table = itertools.takewhile(bool, lines[3:])
    verdicts = {line.split()[0]: line.split()[-1] for line in first_table}
    # Cases whose float64 gradient is exact still pass; rounded ones fail; so does the total.
    assert verdicts["linear"] == "PASS" and verdicts["softmax"] == "FAIL"
    assert verdicts["largest"] == "FAIL"
