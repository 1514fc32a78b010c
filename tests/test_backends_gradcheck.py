"""The hand-written gradients against every backend's autodiff (`keras_bp.checks.autodiff`).

On TensorFlow (this process) the check's parts are tested directly; JAX and PyTorch run in a
subprocess each, marked `backends` (`make test-backends`), skipped where not installed. The
metric and tolerances are `make gradient-check`'s: the largest elementwise error
`|m − r| / (atol/rtol + |r|)`, at most rtol where `assert_allclose(m, r, rtol, atol)` passes.
"""

import numpy as np
import pytest

from keras_bp.checks import autodiff, gradcheck
from keras_bp.runtime import backend_start


def test_the_autodiff_check_catches_a_gradient_wrong_in_the_tenth_digit():
    case = gradcheck.network_case(
        [4, 5, 3], ["tanh", "softmax"], "categorical_crossentropy", 3, "float64"
    )
    reference = autodiff.autodiff_gradients(case)
    right = gradcheck.elementwise_errors(case.manual, reference, **gradcheck.TOLERANCES["float64"])
    assert right.max() <= 1e-12
    wrong = [np.asarray(g) * (1 + 1e-10) for g in case.manual]
    errors = gradcheck.elementwise_errors(wrong, reference, **gradcheck.TOLERANCES["float64"])
    assert errors.max() > 1e-12


def test_central_differences_compute_what_tensorflow_computes():
    """The numerical check JAX and PyTorch use, against `tf.test.compute_gradient`."""
    case = gradcheck.activation_case("sigmoid", 3, 4, "float64")
    ours = autodiff.central_differences(case)
    for a, b in zip(ours, gradcheck.numerical_gradients(case), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_within_tolerance_reads_each_comparisons_rtol():
    passing = {label: t["rtol"] for label, (_, t) in autodiff.COMPARISONS.items()}
    assert autodiff.within_tolerance(passing)
    assert not autodiff.within_tolerance({**passing, "float64 vs autodiff": 2e-12})
    assert not autodiff.within_tolerance({**passing, "float32 vs autodiff": float("nan")})


@pytest.mark.backends
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            b,
            marks=pytest.mark.skipif(
                not backend_start.installed(b), reason=f"{b} is not installed (make backends)"
            ),
        )
        for b in ("jax", "torch")
    ],
)
def test_hand_written_gradients_match_the_backends_autodiff(backend):
    """float64 within rtol 1e-12, float32 within 1e-5, numerical differences within 1e-7."""
    errors = autodiff.check_backend(backend)
    print(f"{backend}: {errors}")
    assert set(errors) == set(autodiff.COMPARISONS)
    for label, (_, tolerance) in autodiff.COMPARISONS.items():
        assert errors[label] <= tolerance["rtol"], (label, errors[label])
