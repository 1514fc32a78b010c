"""The project's load path: `.keras` files only, Keras's safe mode always on, clear refusals.

`keras.saving.load_model(path, safe_mode=True)` refuses to deserialize Python code stored in a
model file (a `Lambda` layer's lambda, a lambda activation), since it would run on load. Keras
says so in a long message about its own options, or, for a lambda activation, only that it
"could not interpret" it; `load_model` turns either into one line that names the file and the
layer. Everything keras_bp saves (`Dense` and the registered `ManualDense`)
loads in safe mode.
"""

import json
import zipfile
from pathlib import Path

import keras

import keras_bp.fused  # noqa: F401  registers FusedRMSprop (a model saved with --fused)
import keras_bp.layers  # noqa: F401  registers ManualDense, so safe mode can rebuild it

# Keras's refusals in safe mode all tell the user how to turn it off.
_SAFE_MODE_HINT = "safe_mode=False"
# What an archive may declare, unpacked, before anything of it is read: keras_bp's model.keras
# holds about 5 MB, its JSON a few kB. A member declaring gigabytes (a decompression bomb) would
# have Python's zipfile allocate its whole output at once.
MAX_UNPACKED_BYTES = 1 << 30
MAX_JSON_BYTES = 16 << 20
MAX_MEMBERS = 1000


def load_model(path) -> keras.Model:
    """Load a model that keras_bp saved, in Keras's safe mode.

    Args:
        path: a `.keras` file, such as a run's `model.keras`.

    Raises:
        ValueError: the file is missing, unreadable or not a `.keras` archive, or it holds
            Python code that safe mode refuses to run; the message names the file and why.
    """
    path = Path(path)
    _check_is_keras_archive(path)
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as e:
        # A lambda activation fails as "Could not interpret activation function identifier",
        # without Keras's safe-mode hint: look for the code itself too.
        code = _python_code_in(path)
        if code or _SAFE_MODE_HINT in _messages(e):
            raise ValueError(
                f"refusing to load {path}: {code or 'safe mode refused part of it'}; safe mode "
                "will not run code from a model file, and keras_bp never saves such layers"
            ) from None
        raise ValueError(f"cannot load {path}: {_innermost(e)}") from None


def _check_is_keras_archive(path: Path):
    if not path.exists():
        raise ValueError(f"cannot load {path}: no such file")
    if not path.is_file():
        raise ValueError(f"cannot load {path}: not a file (expected a .keras file)")
    if path.suffix != ".keras":
        raise ValueError(f"cannot load {path}: expected a .keras file, received {path.suffix!r}")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ValueError(f"cannot load {path}: {e.strerror or e}") from None
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot load {path}: not a .keras archive (not a zip file)")
    _check_declared_sizes(path)


def _check_declared_sizes(path: Path):
    """Refuse an archive whose members declare more than keras_bp's models ever hold unpacked,
    from its directory alone: nothing is decompressed, so nothing is allocated."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"cannot load {path}: not a readable .keras archive ({e})") from None
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"refusing to load {path}: it holds {len(members)} files")
    total = sum(m.file_size for m in members)
    big_json = [m for m in members if m.filename.endswith(".json") and m.file_size > MAX_JSON_BYTES]
    if total > MAX_UNPACKED_BYTES or big_json:
        largest = max(members, key=lambda m: m.file_size)
        raise ValueError(
            f"refusing to load {path}: {largest.filename} declares {largest.file_size:,} bytes "
            f"unpacked from {largest.compress_size:,} (a decompression bomb?); keras_bp's models "
            f"unpack to a few MB"
        )


def _messages(e: BaseException) -> str:
    """The messages of `e` and of the exceptions it wraps: Keras nests them in TypeErrors."""
    texts = []
    while e is not None:
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    return "\n".join(texts)


def _innermost(e: BaseException) -> str:
    while e.__cause__ or e.__context__:
        e = e.__cause__ or e.__context__
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def _python_code_in(path: Path):
    """Say where the file's config holds Python code (lambdas); None if it holds none."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return None
    sites = sorted(set(_code_sites(config, layer=None)))
    return f"it contains Python code (a lambda) in {', '.join(sites)}" if sites else None


def _code_sites(node, layer):
    if isinstance(node, list):
        return [site for item in node for site in _code_sites(item, layer)]
    if not isinstance(node, dict):
        return []
    config = node.get("config")
    if "class_name" in node and isinstance(config, dict) and "name" in config:
        layer = f"{node['class_name']} layer {config['name']!r}"
    # A Lambda layer saves its function as a "__lambda__" object, a Dense layer a lambda
    # activation as {"value": [code, defaults, closure]}.
    if node.get("class_name") == "__lambda__" or (
        set(node) == {"value"} and isinstance(node["value"], list)
    ):
        return [layer or "the model"]
    return [site for value in node.values() for site in _code_sites(value, layer)]
