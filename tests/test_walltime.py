"""The wall-time split every trainer prints: phases that add up, from the process's start."""

import time

import pytest

from keras_bp.runtime import walltime
from keras_bp.runtime.walltime import WallClock


def test_laps_add_up_and_a_part_moves_between_phases():
    clock = WallClock()
    time.sleep(0.02)
    clock.lap("setup")
    time.sleep(0.03)
    clock.lap("training")
    clock.move("training", "evaluation", 0.01)
    clock.move("training", "trace", 1.0)  # never more than the phase holds
    assert clock.seconds["setup"] >= 0.02 and clock.seconds["evaluation"] == 0.01
    assert clock.seconds["training"] == 0.0
    assert clock.total() == pytest.approx(sum(clock.seconds.values()), abs=1e-12)
    assert clock.total() >= 0.05


def test_the_summary_lists_phases_in_the_order_a_run_goes_through_them():
    clock = WallClock()
    for name, seconds in [("saving", 0.04), ("start", 4.0), ("trace", 0.3), ("training", 6.0)]:
        clock.add(name, seconds)
    assert clock.summary() == "wall time 10.3 s: start 4.0, trace 0.3, training 6.0, saving 0.0"
    assert clock.rounded() == {"saving": 0.04, "start": 4.0, "trace": 0.3, "training": 6.0}


def test_a_clock_since_the_process_start_counts_the_imports_already_done():
    age = walltime.process_age()
    assert age is not None and 0 < age < 24 * 3600  # pytest has run for a while, not for days
    clock = WallClock.since_process_start()
    clock.lap("start")
    assert clock.seconds["start"] >= age - 0.05  # /proc counts in clock ticks (10 ms)


def test_timed_blocks_add_up_per_phase():
    timed = walltime.PhaseTimes()
    for _ in range(2):
        with timed("checkpoints"):
            time.sleep(0.01)
    with pytest.raises(KeyError), timed("evaluation"):  # counted even when the block fails
        raise KeyError
    assert timed.seconds["checkpoints"] >= 0.02 and set(timed.seconds) == {
        "checkpoints",
        "evaluation",
    }
