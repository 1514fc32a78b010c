r"""Run N local workers of TensorFlow's `MultiWorkerMirroredStrategy`, each with its TF_CONFIG.

    python scripts/run_workers.py --workers N [--port-base P] [--out DIR] -- COMMAND...
    python scripts/run_workers.py --workers 2 -- \
        python scripts/custom_loop.py --strategy multi-worker --out runs/multi_worker

Each copy of COMMAND gets the environment variable TF_CONFIG, the JSON the strategy reads: the
cluster, every worker's address on 127.0.0.1 (free ports, or P, P+1, … with `--port-base`), and
this copy's index. Worker 0, the chief, writes to this terminal; worker i writes to
`DIR/worker-<i>.log`. DIR is `--out`, else COMMAND's own `--out`, else `runs/workers`.

The workers all-reduce every step, so one that dies leaves the others waiting for it forever.
When a worker exits non-zero or is killed, the launcher sends the others SIGTERM (SIGKILL after
5 s) and exits 1 with one line naming the worker, its exit code or signal, and its last line of
output. Ctrl-C or SIGTERM stops every worker the same way and exits 128 + the signal number.

On several machines there is no launcher: run the same command on each host, with a TF_CONFIG
that names every host and this host's index (0 on host1, 1 on host2):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \
        python scripts/custom_loop.py --strategy multi-worker
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from keras_bp import cli

HOST = "127.0.0.1"
GRACE_SECONDS = 5.0  # the default of --grace
POLL_SECONDS = 0.05
TAIL_BYTES = 4096  # enough of a worker's output to hold its last line


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    log: Path | None  # None for the chief, whose stderr is copied into `tail` as it streams
    tail: bytearray = field(default_factory=bytearray)
    tee: threading.Thread | None = None

    def last_line(self):
        if self.tee:
            self.tee.join(timeout=2)
            text = bytes(self.tail)
        else:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
                text = f.read()
        lines = [line.strip() for line in text.decode(errors="replace").splitlines()]
        return next((line for line in reversed(lines) if line), "(no output)")


def parse_args(argv):
    """The launcher's options come before `--`, COMMAND after it."""
    usage = "%(prog)s --workers N [--port-base P] [--out DIR] [--grace S] -- COMMAND..."
    p = cli.Parser(description=__doc__.splitlines()[0], usage=usage)
    p.add_argument("--workers", type=cli.positive_int, required=True, metavar="N")
    p.add_argument(
        "--port-base",
        type=cli.positive_int,
        metavar="P",
        help="use ports P, P+1, … (default: free ports the system picks)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where worker-<i>.log go (default: COMMAND's --out, else runs/workers)",
    )
    p.add_argument(
        "--grace",
        type=cli.positive_float,
        default=GRACE_SECONDS,
        metavar="S",
        help="seconds a stopped worker has to save at a safe point after SIGTERM, "
        f"before SIGKILL (default: {GRACE_SECONDS:g})",
    )
    split = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if not args.command:
        p.error("no COMMAND to run: give it after --, as in --workers 2 -- python train.py")
    if args.out is None:  # COMMAND's own --out, the last one given, as argparse reads it
        args.out = Path("runs/workers")
        for before, word in zip(["", *args.command[:-1]], args.command, strict=True):
            if before == "--out" or word.startswith("--out="):
                args.out = Path(word.removeprefix("--out="))
    return args


def free_ports(n, base):
    """n ports free on HOST now: the system's choice (held together, so distinct), or base+i."""
    if base is not None and base + n - 1 > 65535:
        cli.fail(f"--port-base {base}: ports up to {base + n - 1} do not exist (max 65535)")
    sockets = []
    try:
        for i in range(n):
            sockets.append(socket.socket())
            # As gRPC binds: only a port someone else is bound or listening to counts as used.
            sockets[-1].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            port = 0 if base is None else base + i
            try:
                sockets[-1].bind((HOST, port))
            except OSError as e:
                cli.fail(
                    f"port {port} on {HOST} is not free ({e.strerror}); try another --port-base"
                )
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def copy_stderr(pipe, tail):
    """Stream the chief's stderr to ours as it comes (progress bars too), keeping its end."""
    for chunk in iter(lambda: os.read(pipe.fileno(), TAIL_BYTES), b""):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail += chunk
        del tail[:-TAIL_BYTES]


def start(command, addresses, index, out):
    config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    # Unbuffered, so a log is live to `tail -f` and a killed worker's last words reach it.
    env = dict(os.environ, TF_CONFIG=json.dumps(config), PYTHONUNBUFFERED="1")
    # A session of its own: Ctrl-C reaches the launcher only, which sends one SIGTERM to each.
    popen = dict(env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    if index == 0:
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, **popen)
        worker = Worker(index, proc, log=None)
        worker.tee = threading.Thread(target=copy_stderr, args=(proc.stderr, worker.tail))
        worker.tee.start()
        return worker
    log = out / f"worker-{index}.log"
    with open(log, "wb") as f:  # the child holds its own copy of the file
        proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, **popen)
    return Worker(index, proc, log)


def stop(workers, grace):
    """SIGTERM to each worker still running, then SIGKILL to those alive `grace` seconds later."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for w in workers:
            if w.proc.poll() is None:
                os.killpg(w.proc.pid, signum)  # its group: COMMAND may be a shell wrapper
        deadline = time.monotonic() + grace
        while any(w.proc.poll() is None for w in workers) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)


def main():
    # Setup: every check before anything starts, so bad input leaves nothing behind.
    args = parse_args(sys.argv[1:])
    prog = os.path.basename(sys.argv[0])
    if args.out.exists() and not args.out.is_dir():
        cli.fail(f"--out {args.out} is a file, not a directory")
    addresses = [f"{HOST}:{port}" for port in free_ports(args.workers, args.port_base)]
    if args.workers > 1:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            cli.fail(f"--out {args.out}: cannot create it ({e.strerror})")
    logs = f"; the others log to {args.out / 'worker-<i>.log'}" if args.workers > 1 else ""
    start_line = f"{args.workers} worker(s) on {', '.join(addresses)}; the chief (0) writes here"
    print(f"{prog}: {start_line}{logs}", flush=True)

    # Start: one copy of COMMAND per worker; a signal from now on stops them all.
    received = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, _: received.append(signum))
    workers = []
    try:
        for index in range(args.workers):
            workers.append(start(args.command, addresses, index, args.out))
    except OSError as e:
        stop(workers, args.grace)
        cli.fail(f"cannot start {args.command[0]}: {e.strerror}")

    # Watch: all succeed, or the first to fail (or a signal) stops the rest.
    while not received:
        failed = [w for w in workers if w.proc.poll() not in (None, 0)]
        if failed:
            break
        if all(w.proc.returncode == 0 for w in workers):
            workers[0].tee.join(timeout=2)  # the chief's last stderr bytes, then exit 0
            return
        time.sleep(POLL_SECONDS)
    stop(workers, args.grace)
    if received:
        name = signal.Signals(received[0]).name
        print(f"{prog}: interrupted by {name}: stopped {args.workers} worker(s)", file=sys.stderr)
        raise SystemExit(128 + received[0])
    w, code = failed[0], failed[0].proc.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    where = f" ({w.log})" if w.log else ""
    print(f"{prog}: error: worker {w.index}{where} {how}: {w.last_line()}", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    main()
