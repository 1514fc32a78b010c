"""The per-op profiler: self times on a hand-built trace, then a real one of the manual loop."""

import re

import pytest
from conftest import run_script
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from keras_bp.speed import op_times, profiling

US = 1_000_000  # picoseconds, the trace's unit
START_NS = 1_700_000_000_000_000_000  # the profile's start, ns since the epoch
FLOW = 15  # the flow type the thread pools' markers carry


def hand_built_trace():
    """Two executor threads, two intra-op threads and the caller, 110 µs of it (2 steps):

    tf_Compute/1  Process 0–100 ⊃ MatMul_3 10–40 (hands out task 7 at 12),
                                  mul_2 50–90 ⊃ ParallelFor 55–85
    tf_Compute/2  Process 20–60 ⊃ Sum 25–45
    Eigen/3       task 7: 15–35, hands out task 8 at 16
    Eigen/4       task 8: 20–30; task 99 (handed out before the trace): 40–45
    python        a tf.function's call 0–100 (waiting), then an eager Mul 100–104
    """
    space = xplane_pb2.XSpace()
    env = space.planes.add(name="Task Environment")
    env.stat_metadata[1].name = "profile_start_time"
    env.stats.add(metadata_id=1, uint64_value=START_NS)
    plane = space.planes.add(name="/host:CPU")
    stat_ids = {name: i for i, name in enumerate(["_p", "_pt", "_c", "_ct"], start=1)}
    for name, i in stat_ids.items():
        plane.stat_metadata[i].name = name
    event_ids = {}

    def add(line, name, start_us, duration_us=0.0, **flows):
        if name not in event_ids:
            event_ids[name] = len(event_ids) + 1
            meta = plane.event_metadata[event_ids[name]]
            meta.name = name
            if re.fullmatch(r"[\w/]+:\w+", name):  # a kernel: "name:OpType"
                meta.display_name = name.rsplit(":", 1)[1]
        event = line.events.add(
            metadata_id=event_ids[name],
            offset_ps=int(start_us * US),
            duration_ps=int(duration_us * US),
        )
        for stat, value in flows.items():
            event.stats.add(metadata_id=stat_ids[stat], int64_value=value)

    one = plane.lines.add(name="tf_Compute/1")
    add(one, "ExecutorState::Process", 0, 100)
    add(one, "while/body/_1/while/MatMul_3:_MklMatMul", 10, 30)
    add(one, "ThreadpoolListener::Record", 12, _p=7, _pt=FLOW)
    add(one, "while/body/_1/while/mul_2:Mul", 50, 40)
    add(one, "ParallelFor", 55, 30)
    two = plane.lines.add(name="tf_Compute/2")
    add(two, "ExecutorState::Process", 20, 40)
    add(two, "while/body/_1/while/Sum:Sum", 25, 20)
    three = plane.lines.add(name="tf_numa_-1_Eigen/3")
    add(three, "ThreadpoolListener::StartRegion", 15, _c=7, _ct=FLOW)
    add(three, "ThreadpoolListener::Record", 16, _p=8, _pt=FLOW)
    add(three, "ThreadpoolListener::StopRegion", 35)
    four = plane.lines.add(name="tf_numa_-1_Eigen/4")
    add(four, "ThreadpoolListener::StartRegion", 20, _c=8, _ct=FLOW)
    add(four, "ThreadpoolListener::StopRegion", 30)
    add(four, "ThreadpoolListener::StartRegion", 40, _c=99, _ct=FLOW)
    add(four, "ThreadpoolListener::StopRegion", 45)
    caller = plane.lines.add(name="python")
    add(caller, "EagerLocalExecute: __inference__run_1", 0, 100)
    add(caller, "EagerLocalExecute: Mul", 100, 4)
    return op_times.Capture(space, START_NS, START_NS + 110_000, 110e-6, path=None)


def rows_by_key(profile):
    return {(r["op"], r["type"]): r for r in profile["rows"]}


def test_nest_gives_each_event_its_duration_less_its_direct_childrens():
    # A parent 0–100 with children 10–40 and 50–90; the second has a child 55–85.
    spans = [(0, 100), (10, 30), (50, 40), (55, 30)]
    assert op_times.nest(spans) == ([30, 30, 10, 30], [None, 0, 0, 2])  # exact: integers
    # A span that starts inside another and outlasts it takes over: the other ends at its start.
    assert op_times.nest([(5, 10), (0, 10)]) == ([10, 5], [None, None])
    assert op_times.nest([(0, 100), (10, 20), (20, 90)]) == ([10, 10, 90], [None, 0, None])
    assert op_times.covered([(0, 10), (5, 10), (20, 5), (21, 1)]) == 20


def test_the_hand_built_trace_comes_out_exact_per_step():
    profile = op_times.step_profile(hand_built_trace(), steps=2)
    rows = rows_by_key(profile)
    expected = {  # (op, type): (µs/step on its thread, µs/step in the pool, events/step)
        ("MatMul_3", "_MklMatMul"): (15.0, 15.0, 0.5),  # 30 own; tasks 7 (20) and 8 (10)
        ("mul_2", "Mul"): (20.0, 0.0, 0.5),  # its ParallelFor is its own work
        ("ExecutorState::Process", "runtime"): (25.0, 0.0, 1.0),  # 30 + 20 between kernels
        ("Sum", "Sum"): (10.0, 0.0, 0.5),
        ("Mul", "eager op"): (2.0, 0.0, 0.5),  # the caller's; its tf.function call waits
        op_times.UNATTRIBUTED: (0.0, 2.5, 0.0),  # task 99's producer is not in the trace
    }
    assert set(rows) == set(expected)
    for key, (thread, pool, events) in expected.items():
        got = (rows[key]["thread_us"], rows[key]["pool_us"], rows[key]["events"])
        assert got == pytest.approx((thread, pool, events), abs=1e-9), key
    assert profile["busy_us"] == pytest.approx(
        {"executor": 70.0, "tf.data": 0.0, "caller": 2.0, "intra-op pool": 17.5}, abs=1e-9
    )
    assert profile["wall_us"] == pytest.approx(55.0, abs=1e-9)
    # Work covers 0–104 µs of the 110 µs window; the caller is outside TensorFlow 104–110.
    assert profile["idle_us"] == pytest.approx(3.0, abs=1e-9)
    assert profile["caller_outside_us"] == pytest.approx(3.0, abs=1e-9)
    assert profile["threads"] == {"executor": 2, "intra-op pool": 2, "caller": 1}


@pytest.mark.parametrize(
    "name, display_name, key",
    [
        ("while/body/_1/while/MatMul_3:_MklMatMul", "_MklMatMul", ("MatMul_3", "_MklMatMul")),
        ("while/cond/_0/while/Less:Less", "Less", ("cond/Less", "Less")),
        (
            "while/body/_1/while/while/body/_7/while/mul:Mul",  # a loop in a loop
            "Mul",
            ("mul", "Mul"),
        ),
        (
            "while/body/_1/gradient_tape/while/dense/MatMul/MatMul:_MklMatMul",  # the tape's
            "_MklMatMul",
            ("gradient_tape/dense/MatMul/MatMul", "_MklMatMul"),
        ),
        (
            "StatefulPartitionedCall/rm_sprop/Square:Square",
            "Square",
            ("rm_sprop/Square", "Square"),
        ),
        ("GatherV2:GatherV2", "GatherV2", ("GatherV2", "GatherV2")),
        ("while_loop/awhile/mul:Mul", "Mul", ("while_loop/awhile/mul", "Mul")),  # not a loop's
        ("ExecutorState::Process", "", None),
        ("Iterator::Root::Prefetch", "Iterator::Prefetch", None),
    ],
)
def test_op_names_lose_the_loop_and_call_prefixes(name, display_name, key):
    assert op_times.op_key(name, display_name) == key


def test_the_table_adds_up_to_its_total():
    rows = [
        {"op": f"op{i}", "type": "Mul", "thread_us": 10.0 * i, "pool_us": 1.0, "events": 1.0}
        for i in range(5, 0, -1)
    ]
    lines = op_times.table({"rows": rows}, top=2).splitlines()
    assert len(lines) == 2 + 2 + 2  # header, rule, 2 ops, everything else, total
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[2][0] == "everything else (3 rows)"
    assert cells[3][0] == "**total**"
    for column in (2, 3, 4):  # µs on its own thread, µs in the pool, events
        parts = sum(float(c[column]) for c in cells[:3])
        assert parts == pytest.approx(float(cells[3][column]), abs=1e-6)
    assert float(cells[3][2]) == pytest.approx(150.0, abs=1e-6)
    assert cells[3][5] == "100.0%"
    assert "everything else" not in op_times.table({"rows": rows}, top=5)


@pytest.fixture(scope="module")
def small_mnist():
    from keras_bp.data import mnist_arrays

    return mnist_arrays(train_samples=1280)  # 10 batches of 128


def test_a_real_profile_of_the_manual_loop(small_mnist, tmp_path):
    window = profiling.trainer_window("manual", small_mnist, steps=10)
    cap = profiling.capture(window.run, tmp_path)
    profile = op_times.step_profile(cap, window.steps)
    kernels = [r for r in profile["rows"] if "MatMul" in r["type"]]
    assert kernels and all(r["events"] == pytest.approx(1.0, abs=1e-9) for r in kernels)
    # The rows add up to the threads' busy time, which is measured apart from them: the time
    # the executor's threads are covered by any event.
    busy = profile["busy_us"]
    assert sum(r["thread_us"] for r in profile["rows"]) == pytest.approx(
        busy["executor"] + busy["tf.data"] + busy["caller"], rel=1e-9
    )
    assert sum(r["pool_us"] for r in profile["rows"]) == pytest.approx(
        busy["intra-op pool"], rel=1e-9
    )
    plane = op_times.host_plane(cap.space)
    executor_ps = sum(
        op_times.covered([(e.offset_ps, e.duration_ps) for e in line.events])
        for line in plane.lines
        if line.name.startswith("tf_Compute")
    )
    assert busy["executor"] == pytest.approx(executor_ps / 1e6 / window.steps, rel=1e-9)
    # No thread is busy longer than the window, give or take the edges (10%).
    assert busy["executor"] <= profile["threads"]["executor"] * profile["wall_us"] * 1.1
    assert 0 <= profile["idle_us"] <= profile["wall_us"]


def test_the_floor_updates_each_weight_once_per_step(small_mnist, tmp_path):
    """The floor's window holds its trace call too: `FLOOR_WARM_STEPS` counts those steps."""
    window = profiling.trainer_window("training-floor", small_mnist, steps=3)
    profile = op_times.step_profile(profiling.capture(window.run, tmp_path), window.steps)
    updates = [r for r in profile["rows"] if r["type"] == "ResourceApplyRMSProp"]
    assert len(updates) == 4  # W1, b1, W2, b2
    assert all(r["events"] == pytest.approx(1.0, abs=1e-9) for r in updates)


def test_the_script_names_the_trainers_the_library_profiles():
    from keras_bp.scripts import profile_ops as script

    assert script.TRAINERS == profiling.TRAINERS


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trainers", "nonsense"], "argument --trainers: expected names from"),
        (["--steps", "469"], "argument --steps: expected at most 468 (one epoch), received 469"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    proc = run_script("scripts/profile_ops.py", *args, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(f"profile_ops.py: error: {message}")
