"""gradcheck.error_samples: the elementwise errors behind the report's histogram.

Tolerances are the gradient tests' own: `gradcheck.TOLERANCES` against the tape (float64
rtol=1e-12, float32 rtol=1e-5), `gradcheck.NUMERICAL_TOLERANCE` against numerical differences
(rtol=1e-7).
"""

import numpy as np
import pytest
from test_backprop import all_cases

from keras_bp import backprop
from keras_bp.checks import gradcheck

LABELS = {"float32 vs tape", "float64 vs tape", "float64 vs numerical"}


@pytest.fixture(scope="module")
def samples():
    return gradcheck.error_samples()


def test_every_label_has_errors_and_its_tolerance(samples):
    assert set(samples.errors) == set(samples.rtol) == LABELS
    assert samples.rtol == {
        "float32 vs tape": gradcheck.TOLERANCES["float32"]["rtol"],
        "float64 vs tape": gradcheck.TOLERANCES["float64"]["rtol"],
        "float64 vs numerical": gradcheck.NUMERICAL_TOLERANCE["rtol"],
    }
    sizes = {label: errors.size for label, errors in samples.errors.items()}
    # One error per gradient entry of every case, and the same entries for each reference.
    expected = sum(np.size(p) for case in gradcheck.tested_cases("float64") for p in case.params)
    assert sizes == dict.fromkeys(LABELS, expected)
    assert expected > 0


@pytest.mark.parametrize("label", sorted(LABELS))
def test_every_error_is_finite_and_within_the_tests_tolerance(samples, label):
    errors = samples.errors[label]
    assert np.all(np.isfinite(errors))
    assert np.all(errors >= 0)
    # The claim the gradient tests make with assert_allclose, element by element.
    assert np.max(errors) <= samples.rtol[label]


def test_the_error_is_the_assert_allclose_criterion():
    """≤ rtol exactly where `np.testing.assert_allclose(m, r, rtol, atol)` passes."""
    rtol, atol = 1e-5, 1e-6
    r = np.array([1.0, 1.0, 0.0, 0.0, -2.0])
    m = r + np.array([0.9e-5 + 1e-6, 1.2e-5 + 1e-6, 0.9e-6, 1.1e-6, -2.5e-5])
    errors = gradcheck.elementwise_errors([m], [r], rtol, atol)
    np.testing.assert_allclose(errors, np.abs(m - r) / (0.1 + np.abs(r)), rtol=1e-12, atol=0)
    passes = [errors[i] <= rtol for i in range(len(r))]
    assert passes == [True, False, True, False, False]
    for i, ok in enumerate(passes):
        if ok:
            np.testing.assert_allclose(m[i], r[i], rtol=rtol, atol=atol)
        else:
            with pytest.raises(AssertionError):
                np.testing.assert_allclose(m[i], r[i], rtol=rtol, atol=atol)


def test_the_cases_are_the_ones_the_gradient_tests_check():
    """tests/test_backprop.py's cases, then test_manual_dense.py's ManualDense cases."""
    cases = gradcheck.tested_cases("float64")
    tested = all_cases("float64")
    assert [(c.name, [np.shape(p) for p in c.params]) for c in cases[: len(tested)]] == [
        (c.name, [np.shape(p) for p in c.params]) for c in tested
    ]
    dense = cases[len(tested) :]
    assert [c.name for c in dense] == [f"ManualDense {a}" for a in sorted(backprop.ACTIVATIONS)]
    assert all([np.shape(p) for p in c.params] == [(5, 4), (4, 3), (3,)] for c in dense)
