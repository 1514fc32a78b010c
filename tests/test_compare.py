"""`make compare`: the three trainers from one seed, into one table."""

import json

import pytest
from conftest import run_main


@pytest.mark.heavy(3)
def test_compare_trains_the_three_and_tabulates_them(tmp_path):
    """In process: TensorFlow is already started (the scripts' own processes: test_loop.py,
    test_recipe.py)."""
    out = tmp_path / "compare"
    result = run_main("compare.py", "--epochs", "1", "--train-samples", "1200", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "compare.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[-3:]] == [
        "fit",
        "tape",
        "manual",
    ]
    fit, tape = (json.loads((out / k / "metrics.json").read_text()) for k in ("fit", "tape"))
    # The same initial weights, batches and graph: the same bits.
    assert fit["weights_sha256"] == tape["weights_sha256"]
