"""The report's statistics: one trainer's spread over seeds, and Welch's comparison of two trainers.

Every quantile comes from `scipy.stats`. Every number returned is a plain Python float, int or
`None`, so a summary goes into `metrics.json` or the report as it is.
"""

import warnings

import numpy as np
from scipy import stats


def _sample(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("expected at least one value, received none")
    return x


def summarize(values, confidence=0.95) -> dict:
    """n, mean, sample std (ddof=1), min, max and the Student-t interval of the mean.

    `ci = mean ± t_{(1+confidence)/2, n−1} · s/√n`. With n < 2 there is no spread to estimate:
    std, ci_low and ci_high are `None`. Equal values give the interval [mean, mean].
    """
    x = _sample(values)
    n, mean = int(x.size), float(np.mean(x))
    summary = {"n": n, "mean": mean, "std": None, "min": float(x.min()), "max": float(x.max())}
    if n < 2:
        return {**summary, "ci_low": None, "ci_high": None}
    if x.min() == x.max():
        # scipy's interval is nan at scale 0; no spread means no uncertainty to report.
        return {**summary, "std": 0.0, "ci_low": mean, "ci_high": mean}
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(x))
    std = float(np.std(x, ddof=1))
    return {**summary, "std": std, "ci_low": float(low), "ci_high": float(high)}


def contains(summary, value) -> bool | None:
    """Whether the summary's interval holds `value`; `None` when there is no interval."""
    if summary["ci_low"] is None:
        return None
    return summary["ci_low"] <= value <= summary["ci_high"]


def welch(a, b, confidence=0.95) -> dict:
    """Welch's comparison of two samples: `difference = mean(a) − mean(b)` and its interval.

    `ci = difference ± t_{(1+confidence)/2, df} · √(s_a²/n_a + s_b²/n_b)` with the
    Welch–Satterthwaite df, from `scipy.stats.ttest_ind(a, b, equal_var=False)`; t and p_value
    are its two-sided statistic and p. Where t is undefined, t and df are `None`:
    - n < 2 in either sample: no variance to estimate, so ci_low, ci_high and p_value are `None`.
    - both samples constant: the interval collapses to [difference, difference]. Equal constants
      give difference 0 and p_value 1.0. Different ones give p_value 0.0, which is degenerate:
      zero spread makes any gap look certain, and says more about the seeds than the trainers.
    """
    x, y = _sample(a), _sample(b)
    w = dict.fromkeys(("difference", "ci_low", "ci_high", "t", "df", "p_value"))
    w.update(n_a=int(x.size), n_b=int(y.size), confidence=float(confidence))
    w["difference"] = float(np.mean(x) - np.mean(y))
    if x.size < 2 or y.size < 2:
        return w
    if x.min() == x.max() and y.min() == y.max():
        d = float(x[0] - y[0])
        return {**w, "difference": d, "ci_low": d, "ci_high": d, "p_value": float(d == 0)}
    with warnings.catch_warnings():
        # One constant sample (deterministic reruns) trips scipy's cancellation check; its variance
        # is then rounding noise, negligible beside the other sample's, so the result stands.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        result = stats.ttest_ind(x, y, equal_var=False)
    ci = result.confidence_interval(confidence)
    return {
        **w,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "t": float(result.statistic),
        "df": float(result.df),
        "p_value": float(result.pvalue),
    }


def distinguishable(w) -> bool | None:
    """True when Welch's interval excludes 0; `None` when there is no interval."""
    if w["ci_low"] is None:
        return None
    return not w["ci_low"] <= 0.0 <= w["ci_high"]


def _signed(x) -> str:
    return f"{x:+.4f}".replace("-", "\N{MINUS SIGN}")


def describe_difference(name_a, name_b, w, metric="test accuracy", n=None) -> str:
    """One plain sentence: the difference, its interval and p, and whether that tells them apart.

    `n` is the seed count to name; `None` reads it from `w`.
    """
    if n is None:
        n = w["n_a"] if w["n_a"] == w["n_b"] else f"{w['n_a']} and {w['n_b']}"
    seeds = f"{n} seed" + ("" if n == 1 else "s")
    head = f"{name_a} and {name_b} differ in mean {metric} by {_signed(w['difference'])}"
    verdict = distinguishable(w)
    if verdict is None:
        return f"{head} (no interval with fewer than 2 runs each): not testable at {seeds}."
    p = "p < 0.001" if w["p_value"] < 0.001 else f"p = {w['p_value']:.2g}"
    ci = f"{100 * w['confidence']:g}% CI {_signed(w['ci_low'])} to {_signed(w['ci_high'])}"
    return f"{head} ({ci}, Welch, {p}): {'' if verdict else 'not '}distinguishable at {seeds}."
