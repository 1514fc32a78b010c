"""`TF_CONFIG`: the cluster a multi-worker run belongs to, read without TensorFlow.

Bad input fails here, in one line, before TensorFlow starts; `keras_bp.training.distribute` builds
the strategy from it. Which directory each process writes is decided here too, so the scripts can
check it before TensorFlow starts.
"""

import json
import os
from pathlib import Path

from keras_bp.runtime.errors import UsageError

SHAPE = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'


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
    return config


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
