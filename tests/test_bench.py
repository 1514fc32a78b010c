"""The bench's fixed inputs: the floor's FLOP count and the CPU it names."""

import re
from pathlib import Path

import pytest

from keras_bp.speed import bench, floors, peers


def test_matmul_flops_counts_the_five_products_of_a_step():
    # forward x·W1, h·W2; backward dW2 = hᵀ·dz, dh = dz·W2ᵀ, dW1 = xᵀ·dh; 2 FLOPs per multiply-add
    expected = 2 * (
        128 * 784 * 512 + 128 * 512 * 10 + 512 * 128 * 10 + 128 * 10 * 512 + 784 * 128 * 512
    )
    assert floors.matmul_flops() == expected


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads Linux's /proc/cpuinfo")
def test_the_cpu_is_named_with_its_vector_extensions():
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).strip()
    flags = set(re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).split())
    described = bench.cpu_description()
    assert described.startswith(model + ", ")
    if "avx512f" in flags:
        assert "AVX-512 (F" in described
    else:
        assert ("AVX2" in described) == ("avx2" in flags)


def test_the_summary_reads_every_row_against_both_floors():
    results = {
        "matmul floor, tf.function": [{"seconds": 1.0, "peak_rss_mb": 10.0}],
        "matmul floor, XLA": [{"seconds": 2.0, "peak_rss_mb": 10.0}],
        "training floor, tf.function": [{"seconds": 1.6, "peak_rss_mb": 10.0}],
        "training floor, XLA": [{"seconds": 1.5, "peak_rss_mb": 10.0}],
        "loop": [
            {"seconds": 2.5, "startup": 0.5, "test_accuracy": 0.97, "peak_rss_mb": 900.0},
            {"seconds": 2.3, "startup": 0.3, "test_accuracy": 0.97, "peak_rss_mb": 800.0},
            {"seconds": 2.1, "startup": 0.1, "test_accuracy": 0.97, "peak_rss_mb": 700.0},
        ],
    }
    summary = bench.summarize(results, steps=1000)
    assert (summary["matmul_floor_seconds"], summary["training_floor_seconds"]) == (1.0, 1.5)
    loop = summary["rows"]["loop"]
    assert loop["seconds"] == 2.3 and loop["x_matmul_floor"] == pytest.approx(2.3)
    assert loop["x_training_floor"] == pytest.approx(2.3 / 1.5)
    assert loop["steady_x_training_floor"] == pytest.approx((2.3 - 0.3) / 1.5)
    assert loop["fixed_us_per_step"] == pytest.approx((2.0 - 1.5) / 1000 * 1e6)
    assert loop["peak_rss_mb"] == 800.0
    assert "gflops" in summary["rows"]["matmul floor, tf.function"] and "gflops" not in loop
    assert bench.table(summary).count("\n") == 2 + len(results) - 1


def test_startup_is_the_first_epochs_time_above_a_later_ones():
    metrics = {"epoch_seconds": [3.0, 1.0, 1.2, 0.8], "train_seconds": 6.0, "test_accuracy": 0.9}
    assert bench.run_figures(metrics)["startup"] == pytest.approx(2.0)
    one_epoch = {"epoch_seconds": [3.0], "train_seconds": 3.0, "test_accuracy": 0.9}
    assert bench.run_figures(one_epoch)["startup"] == 0.0


def test_rows_are_selected_by_words_of_their_names_and_a_word_naming_none_is_refused():
    runs = {name: None for name in ["tape loop: make custom-loop", "manual loop: --xla", "fit"]}
    assert list(bench.select(runs, ["custom-loop", " xla"])) == [
        "tape loop: make custom-loop",
        "manual loop: --xla",
    ]
    with pytest.raises(ValueError, match=r"no row's name contains \['gather'\]"):
        bench.select(runs, ["xla", "gather"])
    with pytest.raises(ValueError, match="no row's name contains"):
        bench.select(runs, [""])


def test_the_peer_rows_are_selected_by_their_engines_name():
    rows = {**dict.fromkeys(["tape loop: make custom-loop", "fit: make train"]), **peers.ROWS}
    assert list(bench.select(rows, ["jax"])) == [
        "peer: fit --backend jax",
        "peer: plain jax loop (jax.jit over a lax.scan of each epoch)",
    ]
    assert list(bench.select(rows, ["torch"])) == [
        "peer: fit --backend torch",
        "peer: plain torch loop (eager, Keras's RMSprop rule)",
    ]
    assert list(bench.select(rows, ["peer"])) == list(peers.ROWS)
    assert set(peers.peer_runs(data=None, epochs=1)) == set(peers.ROWS)  # built, not run


def test_peer_rows_without_their_engine_are_skipped_in_one_line(monkeypatch):
    rows = {name: name for name in ["tape loop: make custom-loop", *peers.ROWS]}
    monkeypatch.setattr(peers.backend_start, "installed", lambda package: package != "torch")
    kept, line = peers.skip_missing(rows)
    assert list(kept) == [name for name in rows if "torch" not in name]
    assert "\n" not in line and "torch not installed" in line and "make backends" in line
    assert line.startswith("skipped 2 peer rows") and "peer: fit --backend torch" in line

    monkeypatch.setattr(peers.backend_start, "installed", lambda package: False)
    kept, line = peers.skip_missing(rows)
    assert list(kept) == ["tape loop: make custom-loop"]
    assert "jax and torch not installed" in line

    monkeypatch.setattr(peers.backend_start, "installed", lambda package: True)
    assert peers.skip_missing(rows) == (rows, None)
