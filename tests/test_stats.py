"""The report's statistics against hand computation, and the published figure against its source."""

import ast
import json
import math
import sys

import pytest
from conftest import ROOT
from scipy import stats as scipy_stats

from keras_bp.report.published import PUBLISHED
from keras_bp.report.stats import contains, describe_difference, distinguishable, summarize, welch

T_975_4 = 2.7764451051977987  # t_0.975 with 4 degrees of freedom, from a t table: 2.776
SEEDS = [0.978, 0.980, 0.976, 0.979, 0.977]


def test_the_t_quantile_with_4_degrees_of_freedom():
    s = summarize(SEEDS)
    sem = s["std"] / math.sqrt(s["n"])
    half_width = (s["ci_high"] - s["ci_low"]) / 2
    assert half_width / sem == pytest.approx(2.7764451, rel=1e-6)
    assert s["mean"] - s["ci_low"] == pytest.approx(s["ci_high"] - s["mean"], rel=1e-9)


def test_summarize_matches_a_hand_computed_example():
    n = len(SEEDS)
    mean = sum(SEEDS) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in SEEDS) / (n - 1))
    half_width = T_975_4 * std / math.sqrt(n)
    # Deviations 0, ±0.001, ±0.002: the squares sum to 1e-5, over n - 1 = 4.
    assert mean == pytest.approx(0.978, rel=0, abs=1e-12)
    assert std == pytest.approx(math.sqrt(2.5e-6), rel=1e-9)

    s = summarize(SEEDS)
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(mean, rel=0, abs=1e-12)
    assert s["std"] == pytest.approx(std, rel=1e-9)
    assert s["min"] == pytest.approx(0.976, rel=0, abs=1e-12)
    assert s["max"] == pytest.approx(0.980, rel=0, abs=1e-12)
    assert s["ci_low"] == pytest.approx(mean - half_width, rel=0, abs=1e-12)
    assert s["ci_high"] == pytest.approx(mean + half_width, rel=0, abs=1e-12)
    assert contains(s, 0.978) is True and contains(s, 0.9777) is True
    assert contains(s, 0.975) is False


def test_a_wider_confidence_gives_a_wider_interval():
    narrow, wide = summarize(SEEDS, confidence=0.90), summarize(SEEDS, confidence=0.99)
    assert wide["ci_high"] - wide["ci_low"] > 1.5 * (narrow["ci_high"] - narrow["ci_low"])


def test_summaries_are_plain_json():
    for s in [summarize(SEEDS), summarize([0.5]), welch(SEEDS, [0.97, 0.975, 0.971])]:
        assert all(v is None or type(v) in (int, float) for v in s.values()), s
        assert json.loads(json.dumps(s)) == s


def test_summarize_with_one_value_has_no_spread():
    s = summarize([0.9777])
    assert s["n"] == 1 and s["std"] is None and s["ci_low"] is None and s["ci_high"] is None
    assert s["mean"] == pytest.approx(0.9777, rel=0, abs=1e-15)
    assert contains(s, 0.9777) is None
    with pytest.raises(ValueError, match="at least one value"):
        summarize([])


def test_summarize_with_zero_variance():
    s = summarize([0.978] * 4)
    assert s["std"] == 0.0  # exact on purpose: no spread at all
    assert s["ci_low"] == s["ci_high"] == s["mean"]
    assert contains(s, s["mean"]) is True and contains(s, 0.979) is False


def test_welch_matches_a_hand_computed_example():
    """a: mean 3, s² 5/2; b: mean 4, s² 4. se² = 5/2/5 + 4/3 = 11/6, and
    df = (11/6)² / ((1/2)²/4 + (4/3)²/2) = 484/137 (Welch–Satterthwaite)."""
    a, b = [1, 2, 3, 4, 5], [2, 4, 6]
    va, vb = 2.5 / 5, 4 / 3
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 2)
    assert df == pytest.approx(484 / 137, rel=1e-12)
    q = scipy_stats.t.ppf(0.975, df)

    w = welch(a, b)
    assert w["difference"] == pytest.approx(-1.0, rel=0, abs=1e-12)
    assert w["df"] == pytest.approx(df, rel=1e-12)
    assert w["t"] == pytest.approx(-1 / se, rel=1e-12)
    assert w["ci_low"] == pytest.approx(-1 - q * se, rel=1e-9)
    assert w["ci_high"] == pytest.approx(-1 + q * se, rel=1e-9)
    assert w["p_value"] == pytest.approx(2 * scipy_stats.t.sf(1 / se, df), rel=1e-9)
    assert distinguishable(w) is False
    # Swapping the samples flips the sign of everything but p.
    flipped = welch(b, a)
    assert flipped["ci_low"] == pytest.approx(-w["ci_high"], rel=1e-12)
    assert flipped["p_value"] == pytest.approx(w["p_value"], rel=1e-12)


def test_welch_tells_well_separated_samples_apart():
    w = welch([0.980, 0.981, 0.982, 0.981], [0.970, 0.971, 0.972, 0.970])
    assert w["ci_low"] > 0 and distinguishable(w) is True
    assert w["p_value"] < 1e-4


def test_welch_with_identical_constant_samples():
    w = welch([0.978] * 5, [0.978] * 5)
    assert w["difference"] == 0.0 and w["ci_low"] == 0.0 and w["ci_high"] == 0.0  # exact
    assert w["p_value"] == 1.0 and w["t"] is None and w["df"] is None
    assert distinguishable(w) is False


def test_welch_with_different_constant_samples_is_degenerate():
    w = welch([0.98] * 3, [0.97] * 3)
    assert w["difference"] == pytest.approx(0.01, rel=1e-9)
    assert w["ci_low"] == w["ci_high"] == w["difference"]
    assert w["p_value"] == 0.0 and w["t"] is None
    assert distinguishable(w) is True


def test_welch_with_identical_varied_samples():
    w = welch(SEEDS, SEEDS)
    assert w["difference"] == pytest.approx(0.0, rel=0, abs=1e-15)
    assert w["p_value"] == pytest.approx(1.0, rel=1e-12)
    assert w["ci_low"] == pytest.approx(-w["ci_high"], rel=1e-9)
    assert distinguishable(w) is False


def test_welch_with_one_run_has_no_interval():
    w = welch([0.978], SEEDS)
    assert w["difference"] == pytest.approx(0.0, rel=0, abs=1e-12)
    assert w["ci_low"] is None and w["p_value"] is None and w["t"] is None
    assert distinguishable(w) is None
    sentence = describe_difference("fit", "tape", w)
    assert "not testable" in sentence and "distinguishable" not in sentence


def test_describe_difference_reads_as_one_sentence():
    w = {
        "difference": 0.0004,
        "ci_low": -0.0012,
        "ci_high": 0.0020,
        "p_value": 0.58,
        "n_a": 5,
        "n_b": 5,
        "confidence": 0.95,
    }
    assert describe_difference("fit", "tape", w) == (
        "fit and tape differ in mean test accuracy by +0.0004 "
        "(95% CI \N{MINUS SIGN}0.0012 to +0.0020, Welch, p = 0.58): "
        "not distinguishable at 5 seeds."
    )


@pytest.mark.parametrize(
    "b",
    [
        [0.977, 0.979, 0.975, 0.978, 0.976],  # 0.001 lower: inside the noise
        [0.970, 0.971, 0.969, 0.972, 0.970],  # far lower
        [0.985, 0.986, 0.984, 0.987, 0.985],  # far higher
        [0.978] * 5,
    ],
)
def test_describe_difference_says_not_distinguishable_exactly_when_the_ci_holds_0(b):
    w = welch(SEEDS, b)
    holds_zero = w["ci_low"] <= 0 <= w["ci_high"]
    sentence = describe_difference("fit", "manual", w)
    assert ("not distinguishable" in sentence) == holds_zero
    assert sentence.endswith(f"{'not ' if holds_zero else ''}distinguishable at 5 seeds.")


def test_the_published_figure_and_its_source():
    assert 0.97 < PUBLISHED.test_accuracy < 0.99
    assert PUBLISHED.printed == f"test_acc: {PUBLISHED.test_accuracy}"
    # The notebook's text rounds the printed figure to 97.8%.
    assert round(PUBLISHED.test_accuracy, 3) == pytest.approx(
        PUBLISHED.stated_test_accuracy, rel=0, abs=1e-12
    )
    assert PUBLISHED.test_loss is None  # the notebook never prints it
    assert "2.1-a-first-look-at-a-neural-network.ipynb" in PUBLISHED.source
    assert PUBLISHED.commit in PUBLISHED.url and PUBLISHED.path in PUBLISHED.url
    assert len(PUBLISHED.commit) == 40


def test_published_imports_only_the_standard_library():
    tree = ast.parse((ROOT / "keras_bp" / "report" / "published.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and imported <= set(sys.stdlib_module_names)
