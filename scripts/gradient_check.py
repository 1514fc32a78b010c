"""
Title: How far are the hand-written gradients from TensorFlow's?
Description: The largest errors of keras_bp.backprop against the tape and numerical gradients.

For each activation, each loss, a two-layer network like the seed's (narrower) and
`ManualDense`, this prints the largest error of the hand-written gradients against
`tf.GradientTape` on the same forward computation (float64 and float32) and against
numerical gradients from `tf.test.compute_gradient` (float64). "rel" is the largest absolute
error divided by the largest gradient entry; "abs" is the largest absolute error.

Run it with:

    python scripts/gradient_check.py
"""

# Setup

from keras_bp import cli

parser = cli.Parser(description="The largest errors of the hand-written gradients.")
cli.add_verbose(parser)
cli.start_tensorflow(parser.parse_args().verbose)  # quietly, before the imports below

from keras_bp import backprop  # noqa: E402
from keras_bp.checks import gradcheck  # noqa: E402


def cases(dtype):
    """The same cases, in the same order, for each dtype."""
    return (
        [gradcheck.activation_case(name, 8, 6, dtype) for name in backprop.ACTIVATIONS]
        + [gradcheck.loss_case(name, 8, 6, dtype) for name in backprop.LOSSES]
        + [
            gradcheck.network_case(
                [20, 32, 10], ["relu", "softmax"], "categorical_crossentropy", 16, dtype
            )
        ]
        + [gradcheck.manual_dense_case(name, 8, 6, 4, dtype) for name in backprop.ACTIVATIONS]
    )


# Measure

rows = []
for case64, case32 in zip(cases("float64"), cases("float32"), strict=True):
    rows.append(
        (
            case64.name,
            gradcheck.tape_errors(case64),
            gradcheck.tape_errors(case32),
            gradcheck.numerical_errors(case64),
        )
    )

# Report

header = ("case", "f64 vs tape", "f32 vs tape", "f64 vs numerical")
print(f"{header[0]:<44}" + "".join(f"{h:>26}" for h in header[1:]))
print(f"{'':<44}" + f"{'rel':>13}{'abs':>13}" * 3)
for name, *errors in rows:
    print(f"{name:<44}" + "".join(f"{e.relative:>13.2e}{e.absolute:>13.2e}" for e in errors))
largest = [
    (max(e[i].relative for _, *e in rows), max(e[i].absolute for _, *e in rows)) for i in range(3)
]
print(f"{'largest':<44}" + "".join(f"{rel:>13.2e}{abs_:>13.2e}" for rel, abs_ in largest))
