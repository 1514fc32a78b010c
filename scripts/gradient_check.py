"""
Title: How far are the hand-written gradients from TensorFlow's?
Description: Each hand-written gradient against the tape and numerical gradients, with a verdict.

For each activation, each loss, two small networks (one like the tutorial's, narrower) and
`ManualDense`, this compares the gradients `keras_bp.backprop` computes by hand with
`tf.GradientTape` on the same forward computation (float32 and float64) and with numerical
gradients from `tf.test.compute_gradient` (float64): the cases the gradient tests check. Then
one row per Keras backend: the same cases against `tf.GradientTape`, `jax.grad` and
`torch.autograd`, and numerical differences on that backend (`keras_bp/checks/autodiff.py`).

The metric is the elementwise error `|m − r| / (atol/rtol + |r|)` of each hand-written entry
`m` against the reference's `r`: a relative error, floored at `atol/rtol` for entries near 0.
It is at most `rtol` exactly where the tests' `np.testing.assert_allclose(m, r, rtol, atol)`
passes. Each row prints its largest per comparison and PASS when all are within their `rtol`;
the script exits 1 if any row fails.

Run it with `make gradient-check`, or:

    .venv/bin/python scripts/gradient_check.py
"""

# Setup

import sys

from keras_bp import cli

parser = cli.Parser(description="The hand-written gradients against the tape and numerical ones.")
cli.add_verbose(parser)
cli.start_tensorflow(parser.parse_args().verbose)  # quietly, before the imports below

from keras_bp.checks import autodiff, gradcheck  # noqa: E402
from keras_bp.runtime import backend_start  # noqa: E402


def verdict(passed):
    return "PASS" if passed else "FAIL"


# Measure: the same cases, in the same order, in each dtype.

rows = gradcheck.check({dtype: gradcheck.tested_cases(dtype) for dtype in ("float32", "float64")})

# Report

labels = list(gradcheck.COMPARISONS)
tolerances = [gradcheck.COMPARISONS[label][2] for label in labels]


def line(first, cells, last=""):
    return f"{first:<44}" + "".join(f"{cell:>24}" for cell in cells) + f"  {last}".rstrip()


print("elementwise error |m − r| / (atol/rtol + |r|), largest per case; PASS: each ≤ its rtol\n")
print(line("case", labels, "verdict"))
print(line("tolerance", [f"rtol {t['rtol']:g}, atol {t['atol']:g}" for t in tolerances]))
for row in rows:
    print(line(row.name, [f"{row.errors[label]:.1e}" for label in labels], verdict(row.passed)))
passed = all(row.passed for row in rows)
largest = [f"{max(row.errors[label] for row in rows):.1e}" for label in labels]
print(line("largest", largest, verdict(passed)))

# Every backend's autodiff on the cases every backend shares (`ManualDense` is TensorFlow's
# custom gradient), each backend in a process of its own: one process runs one Keras backend.

print("\nper backend: the same metric against each engine's autodiff and numerical differences\n")
print(line("backend (engine)", list(autodiff.COMPARISONS), "verdict"))
print(line("tolerance", [f"rtol {t['rtol']:g}" for _, t in autodiff.COMPARISONS.values()]))
for backend, engine in autodiff.ENGINES.items():
    if not backend_start.installed(backend):
        print(line(f"{backend} ({engine})", ["-"] * 3, "not installed: make backends"))
        continue
    if backend == "tensorflow":
        errors = autodiff.check(manual_dense=False)  # this process runs Keras on TensorFlow
    else:
        errors = autodiff.check_backend(backend)
    ok = autodiff.within_tolerance(errors)
    passed = passed and ok
    print(line(f"{backend} ({engine})", [f"{e:.1e}" for e in errors.values()], verdict(ok)))
sys.exit(0 if passed else 1)
