"""Execute the lesson notebooks from their jupytext sources and write each `.ipynb` beside it.

    python docs/tutorial/execute.py [docs/tutorial/lesson.py ...]

`make tutorial` runs it on both languages. The sizes come from the environment
(`KERAS_BP_TUTORIAL_SMALL=1` for a small slice of MNIST; see the notebook's parameter cell).
Cells run in the repository's root; the written notebook keeps its outputs and drops the
kernel's timestamps, so a rerun changes only what the lesson computed.
"""

import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbclient
import nbformat
from jupyter_client.manager import KernelManager

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCES = [HERE / "lesson.py", HERE / "lesson.zh-CN.py"]


def execute(source, timeout=1800):
    """The notebook of the jupytext file `source`, executed top to bottom in a fresh kernel."""
    nb = jupytext.read(source)
    # Over local socket files rather than TCP: nothing listens on the network, nothing warns.
    # The sockets live in a directory of their own, removed afterwards, not in the cells' cwd.
    with tempfile.TemporaryDirectory(prefix="keras-bp-kernel-") as sockets:
        kernel = KernelManager(
            kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel")
        )
        client = nbclient.NotebookClient(
            nb, km=kernel, timeout=timeout, resources={"metadata": {"path": str(ROOT)}}
        )
        client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def main(argv):
    sources = [Path(a) for a in argv] or SOURCES
    for source in sources:
        if source.suffix != ".py" or not source.exists():
            print(f"error: {source}: expected a jupytext .py notebook", file=sys.stderr)
            return 2
    for source in sources:
        start = time.perf_counter()
        nb = execute(source)
        target = source.with_suffix(".ipynb")
        tmp = target.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(target)  # a kill never leaves half a notebook
        print(f"{target}: executed in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
