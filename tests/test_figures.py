"""Every report figure is written as a real, non-blank PNG, and a trainer keeps its colour."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from keras_bp.report import figures


def history(epochs=3, shift=0.0):
    losses = np.linspace(0.25, 0.06, epochs) + shift
    return {
        "loss": list(losses),
        "accuracy": list(1 - losses / 3),
        "test_loss": list(losses + 0.02),
        "test_accuracy": list(0.975 + np.linspace(0, 0.005, epochs)),
    }


def growing(steps=50, zeros=0):
    """A parity curve from 1e-8 to 1e-2; its first `zeros` steps agree exactly."""
    curve = np.logspace(-8, -2, steps)
    curve[:zeros] = 0.0
    return curve


def relative_errors(center, n=200, zeros=0):
    rng = np.random.default_rng(0)
    return np.r_[10 ** rng.normal(center, 0.5, n), np.zeros(zeros)]


# One small call per figure: name -> draw(path).
DRAW = {
    "learning_curves": lambda path: figures.learning_curves(
        {"fit": [history(), history(shift=0.01)], "tape": [history(shift=0.005)]}, path
    ),
    "accuracy_per_seed": lambda path: figures.accuracy_per_seed(
        {"fit": {1: 0.978, 2: 0.980}, "manual": {1: 0.979, 2: 0.979}}, 0.9785, path
    ),
    "parity_over_steps": lambda path: figures.parity_over_steps(
        {"shipped": {"fit vs tape": growing()}, "--xla": {"fit vs tape": growing() / 2}}, path
    ),
    "gradcheck_errors": lambda path: figures.gradcheck_errors(
        {"float32 vs tape": relative_errors(-6), "float64 vs tape": relative_errors(-14)},
        {"float32 vs tape": 1e-4, "float64 vs tape": 1e-10},
        path,
    ),
    "speed": lambda path: figures.speed([("fit", 1.8), ("tape --xla", 1.2)], "Test CPU", path),
    "overfitting": lambda path: figures.overfitting(
        {"loss": [0.3, 0.2, 0.1, 0.05], "val_loss": [0.2, 0.15, 0.17, 0.2]},
        2,
        path,
        stopped_epoch=4,
        run="tape loop, seed 0, validation: the last 10,000 of 60,000 training images",
    ),
    "neuron_convergence": lambda path: figures.neuron_convergence(
        0.4 * np.exp(-np.arange(60) / 10.0), 1e-6, path
    ),
    "loss_activation_grid": lambda path: figures.loss_activation_grid(
        {
            (activation, loss): {
                "seen": [128, 256, 384],
                "loss": list(np.array([2.3, 1.5, 1.0]) * scale),
                "accuracy": [0.1, 0.5, 0.7 + scale / 10],
            }
            for activation in ["relu", "tanh"]
            for loss, scale in [("categorical_crossentropy", 1.0), ("mean_squared_error", 0.04)]
        },
        path,
    ),
}


def assert_png(returned, path):
    """`path` was returned, decodes as a PNG of a plausible size, and is not blank."""
    assert returned == path and path.exists()
    pixels = mpimg.imread(path)
    height, width = pixels.shape[:2]
    assert 300 <= width <= 3000 and 200 <= height <= 2000, (width, height)
    assert pixels[..., :3].std() > 0.01


@pytest.mark.parametrize("name", sorted(DRAW))
def test_each_figure_is_a_nonblank_png(tmp_path, name):
    path = tmp_path / "figures" / f"{name}.png"
    assert_png(DRAW[name](path), path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert figures.plt.get_fignums() == []  # closed, so a long report does not pile figures up


def test_zeros_on_log_axes_are_drawn_at_a_floor(tmp_path):
    """Trainers that agree exactly give zeros; a log axis must not choke on them."""
    parity = tmp_path / "parity.png"
    curves = {
        "shipped": {"fit vs tape": growing(zeros=10)},
        "--fused": {"tape vs manual": np.zeros(50)},
    }
    assert_png(figures.parity_over_steps(curves, parity), parity)
    gradcheck = tmp_path / "gradcheck.png"
    errors = {"float64 vs tape": relative_errors(-14, zeros=20), "float32 vs tape": np.zeros(5)}
    assert_png(figures.gradcheck_errors(errors, {"float64 vs tape": 1e-10}, gradcheck), gradcheck)


def test_the_floor_sits_below_every_real_value():
    assert figures._log_floor([np.array([0.0, 3e-14, 1.0])]) == pytest.approx(1e-15)
    assert figures._log_floor([np.zeros(3)]) == figures.MAX_FLOOR


def test_colours_are_stable_and_trainers_own_theirs():
    trainers = [figures.color(t) for t in figures.TRAINERS]
    assert len(set(trainers)) == 3
    assert figures.color("fit") == trainers[0]
    others = [figures.color(f"other label {i}") for i in range(20)]
    assert [figures.color(f"other label {i}") for i in range(20)] == others
    assert not set(others) & set(trainers)


def test_the_same_trainer_is_drawn_in_the_same_colour(tmp_path, monkeypatch):
    """The learning curves and the per-seed strip plot both draw tape in tape's colour."""
    colours, close = [], figures.plt.close

    def look_then_close(fig):
        lines = [to_rgb(line.get_color()) for ax in fig.axes for line in ax.lines]
        points = [to_rgb(c) for ax in fig.axes for s in ax.collections for c in s.get_edgecolor()]
        colours.append(set(lines) | set(points))
        close(fig)

    monkeypatch.setattr(figures.plt, "close", look_then_close)
    figures.learning_curves({"tape": [history()]}, tmp_path / "curves.png")
    figures.accuracy_per_seed({"tape": {1: 0.98, 2: 0.979}}, 0.9785, tmp_path / "seeds.png")
    tape, fit = to_rgb(figures.color("tape")), to_rgb(figures.color("fit"))
    assert all(tape in drawn and fit not in drawn for drawn in colours)


def test_a_failed_draw_leaves_no_file_and_no_open_figure(tmp_path):
    open_before = figures.plt.get_fignums()
    with pytest.raises(KeyError):
        figures.learning_curves({"fit": [{"loss": [0.1]}]}, tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []
    assert figures.plt.get_fignums() == open_before


def test_seeds_with_equal_accuracy_stand_side_by_side(tmp_path, monkeypatch):
    """Equal accuracies would hide one marker under another: each seed has its own place."""
    seen, close = [], figures.plt.close

    def look_then_close(fig):
        seen.extend((tuple(line.get_xdata()), line.get_marker()) for line in fig.axes[0].lines)
        close(fig)

    monkeypatch.setattr(figures.plt, "close", look_then_close)
    figures.accuracy_per_seed({"fit": {0: 0.98, 1: 0.98, 2: 0.98}}, 0.9777, tmp_path / "s.png")
    places = [x for x, marker in seen if marker not in ("None", "")]
    markers = {marker for _, marker in seen if marker not in ("None", "")}
    assert len(set(places)) == 3 and len(markers) == 3


def test_the_gradient_histogram_counts_exact_zeros_instead_of_drawing_them(tmp_path, monkeypatch):
    titles, close = [], figures.plt.close

    def look_then_close(fig):
        titles.extend(ax.get_title(loc="left") for ax in fig.axes)
        close(fig)

    monkeypatch.setattr(figures.plt, "close", look_then_close)
    errors = {"float64 vs tape": relative_errors(-14, n=50, zeros=20)}
    figures.gradcheck_errors(errors, {"float64 vs tape": 1e-12}, tmp_path / "g.png")
    assert titles == ["float64 vs tape: 70 entries, 20 exactly equal (not drawn)"]
