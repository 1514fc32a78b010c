"""Reading TensorFlow's profiler, op by op: where each microsecond of a step went.

`keras_bp.speed.profiling` runs a trainer's steps under `tf.profiler.experimental` and hands the
`XSpace` written here (`step_profile`). On the host plane, each kind of thread counts what is
work on it:

- the executor's inter-op threads (`tf_Compute/…`): every event. Events on one thread nest
  (`ExecutorState::Process` holds the kernels it runs, a kernel its `ParallelFor`), so an event
  counts its SELF time, its duration less its direct children's, and nothing counts twice. A
  kernel takes the self time of the runtime's events inside it; `ExecutorState::Process`'s own
  is the executor's overhead: scheduling between kernels.
- tf.data's threads (`tf_data_…`, `fit`'s input) and the caller's (`python`): the executor's
  work run there (`ExecutorState::Process` and kernels) and the caller's eager ops. Their other
  events wait: for the prefetch buffer, or for the executor to finish a `tf.function` call.
- the intra-op pool (`tf_numa_…_Eigen/…`): zero-length `StartRegion` and `StopRegion` markers
  around each task, a shard of a matmul or of a big elementwise op. A task is charged to the
  kernel that handed it out, followed back through the markers' flow ids (`_p` and `_c`).

Besides the rows, a profile has each kind's busy time summed over its threads, and the time no
op of any thread runs (`idle_us`): the caller's Python (`caller_outside_us`), the overhead of
its TensorFlow calls, threads waking up. Busy is thread time, not CPU time: a kernel's own
thread also waits there for the pool's tasks it handed out, so busy can exceed cores × wall.

Names lose the scopes of loops and function calls (`while/body/_1/while/`,
`StatefulPartitionedCall/`), so an op reads as the code names it.
"""

import dataclasses
import os
import re
from pathlib import Path

from tensorflow.tsl.profiler.protobuf import xplane_pb2

from keras_bp.training import runs

PROCESS = "ExecutorState::Process"
# Kinds of thread, by the name the profiler gives their line; any other line is a caller's.
THREAD_KINDS = (("tf_Compute", "executor"), ("tf_data", "tf.data"), ("_Eigen", "intra-op pool"))
UNATTRIBUTED = ("(tasks not traced back to a kernel)", "intra-op pool")
# A loop's body or condition function, then the name scopes of loops and function calls.
_LOOP_FUNCTION = re.compile(r"while/(body|cond)/_\d+/")
_SCOPE = re.compile(r"(?:^|(?<=/))(?:while|(?:Stateful)?PartitionedCall(?:_\d+)?)/")


@dataclasses.dataclass
class Capture:
    """The profile of one window: its `XSpace`, the window's bounds in the profiler's clock
    (ns since the epoch), its seconds, and the file read."""

    space: xplane_pb2.XSpace
    start_ns: int
    stop_ns: int
    seconds: float
    path: Path


# Reading the profile.


def nest(spans):
    """The self time and parent of each of one thread's `(start, duration)` spans.

    A span that starts and ends inside another nests in it. One that starts inside and ends
    after it takes over: the other ends where it starts (the executor opens a loop iteration's
    `ExecutorState::Process` a microsecond before it closes the last one's). So self times are
    never negative, and add up to the time covered by any span, each instant once.

    Returns:
        `(self_times, parents)` in the order of `spans`; a parent is an index or None.
    """
    self_times, parents = [0] * len(spans), [None] * len(spans)
    ends, children = [0] * len(spans), [0] * len(spans)
    stack = []

    def close(i, at):
        ends[i] = min(ends[i], at)
        self_times[i] = ends[i] - spans[i][0] - children[i]
        if parents[i] is not None:
            children[parents[i]] += ends[i] - spans[i][0]

    for i in nest_order(spans):
        start, duration = spans[i]
        ends[i] = start + duration
        while stack and (start >= ends[stack[-1]] or ends[i] > ends[stack[-1]]):
            close(stack.pop(), start)
        parents[i] = stack[-1] if stack else None
        stack.append(i)
    for i in reversed(stack):  # children before their parents
        close(i, ends[i])
    return self_times, parents


def nest_order(spans):
    """Indices of `spans` by start, the longest first: every parent before its children."""
    return sorted(range(len(spans)), key=lambda i: (spans[i][0], -spans[i][1]))


def covered(spans):
    """How long at least one of the `(start, duration)` spans is running."""
    total, reach = 0, None
    for start, duration in sorted(spans):
        end = start + duration
        if reach is None or start >= reach:
            total, reach = total + duration, end
        elif end > reach:
            total, reach = total + end - reach, end
    return total


def op_key(name, display_name):
    """`("MatMul_3", "_MklMatMul")` for the kernel event `while/body/_1/while/MatMul_3:_MklMatMul`;
    None for the runtime's own events (`ExecutorState::Process`, …). The scopes of loops and
    function calls go (`gradient_tape/while/dense/MatMul` is `gradient_tape/dense/MatMul`); a
    loop condition's ops keep `cond/`."""
    if not display_name or not name.endswith(":" + display_name):
        return None
    op = _LOOP_FUNCTION.sub(lambda m: "cond/" if m[1] == "cond" else "", name)
    return _SCOPE.sub("", op[: -len(display_name) - 1]), display_name


def eager_op(name):
    """`"Mul"` for the caller's `EagerLocalExecute: Mul`; None for any other event, and for a
    `tf.function`'s call (`EagerLocalExecute: __inference_…`), which waits for the executor."""
    prefix = "EagerLocalExecute: "
    if not name.startswith(prefix) or name.startswith(prefix + "__"):
        return None
    return name[len(prefix) :]


def thread_kind(line_name):
    """`"executor"`, `"tf.data"`, `"intra-op pool"` or `"caller"`, from the line's name."""
    return next((kind for mark, kind in THREAD_KINDS if mark in line_name), "caller")


def host_plane(space):
    plane = next((p for p in space.planes if p.name == "/host:CPU"), None)
    if plane is None:
        raise ValueError("the profile has no /host:CPU plane")
    return plane


def step_profile(cap: Capture, steps):
    """Per training step: each op's self time on its own thread and the time of the intra-op
    pool's tasks it handed out (`rows`, highest total first), the busy time of each kind of
    thread, the time no op runs (`idle_us`), and the caller's time outside TensorFlow. Every
    figure is in µs per step; the rows add up to the busy times."""
    plane = host_plane(cap.space)
    flows = _Flows(plane)
    own = {}  # (op, type) -> [self ps on its own thread, events]
    busy = {"executor": 0, "tf.data": 0, "caller": 0}
    threads, work, outside, pool_lines = {}, [], [], []
    origin = _profile_start_ns(cap.space)
    window = ((cap.start_ns - origin) * 1000, (cap.stop_ns - origin) * 1000)  # ps, as events
    for line in plane.lines:
        kind = thread_kind(line.name)
        threads[kind] = threads.get(kind, 0) + 1
        if kind == "intra-op pool":
            pool_lines.append(line)
            continue
        events = list(line.events)
        names = [plane.event_metadata[e.metadata_id].name for e in events]
        keys = [
            op_key(n, plane.event_metadata[e.metadata_id].display_name)
            for n, e in zip(names, events, strict=True)
        ]
        spans = [(line.timestamp_ns * 1000 + e.offset_ps, e.duration_ps) for e in events]
        self_times, parents = nest(spans)
        owners = _owners(spans, names, keys, parents, kind)
        for i, owner in enumerate(owners):
            if owner is None:
                continue
            flows.produced(events[i], ("op", owner))
            row = own.setdefault(owner, [0, 0])
            row[0] += self_times[i]
            row[1] += parents[i] is None or owners[parents[i]] != owner  # a new event of its row
            busy[kind] += self_times[i]
            work.append(spans[i])
        if kind == "caller":
            outside.append(window[1] - window[0] - covered(_clip(spans, window)))
    pool, tasks = _pool_times(plane, pool_lines, flows)
    work += tasks
    per_step = 1e6 * steps  # ps per µs, times steps
    rows = [
        {
            "op": key[0],
            "type": key[1],
            "thread_us": own.get(key, (0, 0))[0] / per_step,
            "pool_us": pool.get(key, 0) / per_step,
            "events": own.get(key, (0, 0))[1] / steps,
        }
        for key in set(own) | set(pool)
    ]
    rows.sort(key=lambda r: (-(r["thread_us"] + r["pool_us"]), r["op"], r["type"]))
    busy["intra-op pool"] = sum(pool.values())
    return {
        "steps": steps,
        "wall_us": cap.seconds / steps * 1e6,
        "threads": threads,
        "cores": os.cpu_count(),
        "busy_us": {kind: ps / per_step for kind, ps in busy.items()},
        "idle_us": (window[1] - window[0] - covered(_clip(work, window))) / per_step,
        # The main caller: the caller thread with the most time inside TensorFlow's calls.
        "caller_outside_us": min(outside) / per_step if outside else None,
        "rows": rows,
        "trace": str(cap.path),
    }


def _owners(spans, names, keys, parents, kind):
    """The row each event's self time goes to: a kernel's or eager op's own; inside one, or
    for a zero-length marker, its parent's; `ExecutorState::Process` and the executor's other
    events their own (type `"runtime"`). None where it is not work: off the executor's
    threads, outside `ExecutorState::Process`, kernels and eager ops."""
    owners = [None] * len(spans)
    for i in nest_order(spans):
        parent = None if parents[i] is None else owners[parents[i]]
        zero = spans[i][1] == 0
        if keys[i] is not None:
            owners[i] = keys[i]
        elif names[i] == PROCESS:
            owners[i] = (PROCESS, "runtime")
        elif kind == "caller" and eager_op(names[i]):
            owners[i] = (eager_op(names[i]), "eager op")
        elif parent is not None and (parent[1] != "runtime" or zero):
            owners[i] = parent
        elif not zero and (kind == "executor" or parent is not None):
            owners[i] = (names[i], "runtime")
    return owners


def _clip(spans, window):
    """The parts of `spans` inside `window = (start, stop)`."""
    start, stop = window
    return [
        (max(s, start), min(s + d, stop) - max(s, start))
        for s, d in spans
        if s < stop and s + d > start
    ]


def _profile_start_ns(space):
    """The profile's start, ns since the epoch: the lines' timestamps count from it."""
    for plane in space.planes:
        names = {k: m.name for k, m in plane.stat_metadata.items()}
        for stat in plane.stats:
            if names.get(stat.metadata_id) == "profile_start_time":
                return stat.uint64_value or stat.int64_value
    raise ValueError("the profile has no profile_start_time")


class _Flows:
    """The flow ids that tie a pool's task to the event that handed it out: the producer's
    `ThreadpoolListener::Record` carries `(_pt, _p)`, the task's `StartRegion` `(_ct, _c)`."""

    def __init__(self, plane):
        self.ids = {m.name: k for k, m in plane.stat_metadata.items()}
        self.producer = {}  # flow -> ("op", row), or ("task", the flow that task consumed)

    def stat(self, event, name):
        wanted = self.ids.get(name)
        for s in event.stats:
            if s.metadata_id == wanted:
                return s.int64_value or s.uint64_value
        return None

    def produced(self, event, owner):
        flow = self.stat(event, "_p")
        if flow is not None:
            self.producer[(self.stat(event, "_pt"), flow)] = owner

    def consumed(self, event):
        flow = self.stat(event, "_c")
        return None if flow is None else (self.stat(event, "_ct"), flow)

    def root(self, flow, limit=64):
        """The row at the head of the chain of tasks that led to the task consuming `flow`."""
        for _ in range(limit):
            owner = self.producer.get(flow)
            if owner is None:
                return UNATTRIBUTED
            if owner[0] == "op":
                return owner[1]
            flow = owner[1]  # a task handed this one out: follow what that task consumed
        return UNATTRIBUTED


def _pool_times(plane, lines, flows):
    """`({row: ps}, spans)` of the intra-op pool's tasks, each charged to the row that handed
    it out, directly or through the tasks that split it further."""
    charged, spans = {}, []
    for line in lines:
        tasks, consumed, open_tasks = [], [], []  # open: (start, the flow it consumed)
        for event in sorted(line.events, key=lambda e: e.offset_ps):
            name = plane.event_metadata[event.metadata_id].name
            at = line.timestamp_ns * 1000 + event.offset_ps
            if name == "ThreadpoolListener::StartRegion":
                open_tasks.append((at, flows.consumed(event)))
            elif name == "ThreadpoolListener::StopRegion" and open_tasks:
                start, flow = open_tasks.pop()
                tasks.append((start, at - start))
                consumed.append(flow)
            elif name == "ThreadpoolListener::Record" and open_tasks:
                flows.produced(event, ("task", open_tasks[-1][1]))
        self_times, _ = nest(tasks)
        for flow, ps in zip(consumed, self_times, strict=True):
            charged[flow] = charged.get(flow, 0) + ps
        spans += tasks
    # Every producer is known once all lines are read: now follow each chain to its head.
    rows = {}
    for flow, ps in charged.items():
        row = flows.root(flow)
        rows[row] = rows.get(row, 0) + ps
    return rows, spans


# The report.


def table(profile, top=20):
    """The profile's rows as a markdown table: the `top` rows by time, then everything else in
    one row, then the total, so the columns add up."""
    rows = profile["rows"]
    total = sum(r["thread_us"] + r["pool_us"] for r in rows) or 1.0

    def line(op, kind, group):
        thread, pool = sum(r["thread_us"] for r in group), sum(r["pool_us"] for r in group)
        events = sum(r["events"] for r in group)
        share = (thread + pool) / total
        return [op, kind, f"{thread:.1f}", f"{pool:.1f}", f"{events:.2f}", f"{share:.1%}"]

    lines = [line(f"`{r['op']}`", r["type"], [r]) for r in rows[:top]]
    if rows[top:]:
        lines.append(line(f"everything else ({len(rows[top:])} rows)", "", rows[top:]))
    lines.append(line("**total**", "", rows))
    headers = ["op", "type", "µs/step, own thread", "µs/step, intra-op pool", "events/step"]
    return runs.markdown_table([*headers, "share"], lines)


def headline(profile, cpu):
    """One line: the trainer, its steps, the wall and busy µs per step, and the CPU."""
    busy, threads = profile["busy_us"], profile["threads"]
    outside = profile["caller_outside_us"]
    parts = [
        f"{busy['executor']:.0f} on {threads.get('executor', 0)} executor threads",
        f"{busy['intra-op pool']:.0f} on {threads.get('intra-op pool', 0)} intra-op threads",
    ]
    if busy["tf.data"]:
        parts.append(f"{busy['tf.data']:.0f} in tf.data's functions")
    if busy["caller"]:
        parts.append(f"{busy['caller']:.0f} in the caller's eager ops and kernels")
    return (
        f"{profile['trainer']}: {profile['steps']} steps; wall {profile['wall_us']:.0f} µs/step "
        f"under the profiler ({profile['unprofiled_wall_us']:.0f} without it); busy "
        f"{sum(busy.values()):.0f} µs/step summed over threads ({', '.join(parts)}); "
        f"{profile['idle_us']:.0f} µs/step with no op running"
        + (f" ({outside:.0f} of it the caller outside TensorFlow)" if outside is not None else "")
        + f"; {profile['cores']} cores, {cpu}"
    )
