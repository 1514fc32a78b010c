"""What every trainer writes into its output directory: `metrics.json` and `model.keras`.

Both files are written atomically, so a kill mid-write never leaves a file a rerun would trust.
"""

import platform
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_bp import atomic
from keras_bp.model import weights_digest


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def save_run(out: Path, model: keras.Model, metrics: dict) -> dict:
    """Save `model.keras` and `metrics.json` (with `weights_sha256` and versions) into `out`."""
    out = Path(out)
    metrics = {**metrics, "weights_sha256": weights_digest(model), "versions": versions()}
    with atomic.atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    atomic.write_json(out / "metrics.json", metrics)
    return metrics


def markdown_table(headers, rows) -> str:
    """A GitHub-flavoured markdown table; cells are formatted with `str`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
