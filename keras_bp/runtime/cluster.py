"""`TF_CONFIG`: the cluster a multi-worker run belongs to, read without TensorFlow.

Bad input fails here, in one line, before TensorFlow starts; `keras_bp.training.distribute` builds
the strategy from it. Which directory each process writes is decided here too, so the scripts can
check it before TensorFlow starts.
"""

import errno
import faulthandler
import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

from keras_bp.runtime.errors import UsageError

SHAPE = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
# How long a task waits for every peer of the cluster to come up, unless this says otherwise.
JOIN_SECONDS_ENV = "KERAS_BP_JOIN_SECONDS"
JOIN_SECONDS = 120
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def read(text=None) -> dict:
    """TF_CONFIG's JSON (`text`, or the environment's) as a dict, or a one-line `UsageError`."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise UsageError(f"TF_CONFIG is not set; multi-worker training needs {SHAPE}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"TF_CONFIG is not valid JSON ({e}); expected {SHAPE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker"), list):
        raise UsageError(f"TF_CONFIG has no cluster.worker list of addresses; expected {SHAPE}")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UsageError(f"TF_CONFIG has no task with a type and an index; expected {SHAPE}")
    kind, index = task["type"], task["index"]
    tasks = cluster.get(kind) if isinstance(cluster.get(kind), list) else []
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(tasks):
        raise UsageError(
            f"TF_CONFIG's task index {index!r} is out of range: cluster.{kind} lists "
            f"{len(tasks)} addresses"
        )
    for job, addresses in cluster.items():
        if not isinstance(addresses, list):
            raise UsageError(
                f"TF_CONFIG's cluster.{job} is not a list of addresses; expected {SHAPE}"
            )
        for i, address in enumerate(addresses):
            host_port(address, f"cluster.{job}[{i}]")
    return config


def host_port(address, where="") -> tuple:
    """`("host", port)` of a TF_CONFIG address `"host:port"` (`"[::1]:port"` for IPv6), or a
    one-line `UsageError` naming `where` it is."""
    what = f"TF_CONFIG's {where} {address!r}"
    if not isinstance(address, str):
        raise UsageError(f'{what} is not a string; expected "host:port", as "10.0.0.2:12345"')
    host, colon, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f'{what} has no host and port; expected "host:port", as "10.0.0.2:12345"')
    return host, int(port)


def own_address(config: dict) -> tuple:
    """`(host, port)` this task's server listens on."""
    task = config["task"]
    return host_port(config["cluster"][task["type"]][task["index"]])


def check_port_free(config: dict):
    """Refuse, before TensorFlow starts, a port of this task that another process holds:
    TensorFlow's gRPC server would fail to start (`Could not start gRPC server`) after its
    imports."""
    host, port = own_address(config)
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        # As gRPC binds: on every interface, and only a port someone is bound to counts as used.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("", port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            task = config["task"]
            raise UsageError(
                f"port {port} on {host} is not free ({e.strerror}): TF_CONFIG gives it to "
                f"{task['type']} {task['index']}, this task; choose another port in TF_CONFIG"
            ) from None
    finally:
        probe.close()


def workers(config: dict) -> int:
    """The processes that train together: the chief, if the cluster names one, and the workers."""
    return sum(len(config["cluster"].get(job, [])) for job in ("chief", "worker"))


def is_chief(config: dict) -> bool:
    """The task that saves, as `MultiWorkerMirroredStrategy` decides: the `chief` task, or
    worker 0 of a cluster without one."""
    task = config["task"]
    if "chief" in config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def planned(train_config) -> dict:
    """The distribution `train_config` asks for (the run identity's): strategy, replicas and
    worker processes, one replica each under multi-worker."""
    count = workers(read()) if train_config.strategy == "multi-worker" else 1
    replicas = train_config.replicas or count
    return {"strategy": train_config.strategy, "replicas": replicas, "workers": count}


def process_out(train_config) -> Path:
    """Where this process writes: `out` for the chief or a single process; for any other task,
    `out/workers/TYPE-INDEX`, with its own lock, run log, checkpoints and metrics (its weights
    equal the chief's)."""
    out = Path(train_config.out)
    if train_config.strategy != "multi-worker":
        return out
    config = read()
    if is_chief(config):
        return out
    task = config["task"]
    return out / "workers" / f"{task['type']}-{task['index']}"


class JoinDeadline:
    """End this task in one line if the cluster has not formed within `seconds`.

    `MultiWorkerMirroredStrategy()` waits inside TensorFlow, for an hour by default, for every
    task to register, and holds Python's interpreter lock while it does: no Python thread and
    no Python signal handler runs. So the bound lives outside Python's lock: a small watchdog
    process (`python -m keras_bp.runtime.cluster`) prints, when `seconds` pass before `joined()`,
    which peers accept no connection (`worker 1 at host:port did not join within 120 s`), and
    `faulthandler`'s timer, a C thread, ends this process with exit code 1 a moment later.

    Signals during the wait: there is nothing to save. SIGINT ends the process as the system
    does by default (exit 130). SIGTERM is caught by TensorFlow's own handler (its preemption
    notice), so one sent to the process group (a launcher, `timeout`, a terminal) reaches the
    watchdog, which says so in one line and ends the task with SIGKILL; one sent to this
    process alone waits for the bound. `joined()` puts keras_bp's handlers back.
    """

    def __init__(self, config: dict, seconds: float):
        self._signals = {s: signal.signal(s, signal.SIG_DFL) for s in STOP_SIGNALS}
        peers = json.dumps(list(_peers(config)))
        prog = os.path.basename(sys.argv[0])
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", "keras_bp.runtime.cluster", f"{seconds:g}", peers, prog],
            stdin=subprocess.PIPE,
        )
        self._sink = open(os.devnull, "w")  # noqa: SIM115  faulthandler's traceback goes here
        faulthandler.dump_traceback_later(seconds + 2, exit=True, file=self._sink)

    def joined(self):
        faulthandler.cancel_dump_traceback_later()
        self._watchdog.communicate(b"joined")
        self._sink.close()
        for s, handler in self._signals.items():
            signal.signal(s, handler)


def _watchdog(seconds, peers, prog):
    """The watchdog process: wait `seconds` for the task to say it joined (or to end)."""
    task = os.getppid()

    def end_the_task(signum, frame):
        name = signal.Signals(signum).name
        print(
            f"\n{prog}: interrupted by {name} while waiting for the cluster's peers: nothing to "
            "save; ending the task",
            file=sys.stderr,
            flush=True,
        )
        os.kill(task, signal.SIGKILL)
        os._exit(128 + signum)

    for s in STOP_SIGNALS:
        signal.signal(s, end_the_task)
    ready, _, _ = select.select([sys.stdin], [], [], float(seconds))
    if ready:
        return  # joined, or the task ended: its stdin closed
    missing = [name for name, address in json.loads(peers) if not _accepts(address)]
    who = ", ".join(missing) if missing else "the cluster (every peer is listening)"
    print(
        f"{prog}: error: {who} did not join within {seconds} s; start each task with the same "
        f"TF_CONFIG and its own index, or check the addresses (set {JOIN_SECONDS_ENV} to wait "
        "longer)",
        file=sys.stderr,
        flush=True,
    )


_deadline = None


def start_join_deadline(seconds=None):
    """Start this process's `JoinDeadline` (once), before TensorFlow waits for the cluster."""
    global _deadline
    if _deadline is None:
        if seconds is None:
            seconds = float(os.environ.get(JOIN_SECONDS_ENV) or JOIN_SECONDS)
        _deadline = JoinDeadline(read(), seconds)
    return _deadline


def joined():
    """The cluster has formed (its strategy exists): stop this process's `JoinDeadline`."""
    global _deadline
    if _deadline is not None:
        _deadline.joined()
        _deadline = None


def _peers(config: dict):
    """`("worker 1 at host:port", address)` for every other task of the cluster."""
    task = config["task"]
    for job, addresses in config["cluster"].items():
        for i, address in enumerate(addresses):
            if (job, i) != (task["type"], task["index"]):
                yield f"{job} {i} at {address}", address


def _accepts(address):
    try:
        socket.create_connection(host_port(address), timeout=2).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    _watchdog(*sys.argv[1:])
