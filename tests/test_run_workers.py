"""The multi-worker launcher with small Python workers in place of training: real processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress

import pytest
from conftest import ROOT, run_script

# A worker: does what argv says for its index, after recording its PID and printing TF_CONFIG.
WORKER = """
import json, os, pathlib, signal, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
action = sys.argv[2 + index]
if action == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1], f"pid-{index}").write_text(str(os.getpid()))
print("TF_CONFIG", os.environ["TF_CONFIG"], flush=True)
if action == "fail":
    print("working", file=sys.stderr)
    print("boom", file=sys.stderr)
    print("", file=sys.stderr)
    sys.exit(3)
if action == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if action in ("sleep", "stubborn"):
    time.sleep(60)
"""
ERROR = "run_workers.py: error: "


def worker_command(tmp_path, *actions):
    return ["--", sys.executable, "-c", WORKER, tmp_path, *actions]


def worker_pids(tmp_path):
    return [int(p.read_text()) for p in sorted(tmp_path.glob("pid-*")) if p.read_text()]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def launch(tmp_path):
    """Start the launcher; afterwards kill it and its workers if a test left them running."""
    started = []

    def start(*args):
        proc = subprocess.Popen(
            [sys.executable, ROOT / "scripts" / "run_workers.py", *map(str, args)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    for pid in worker_pids(tmp_path):
        with suppress(ProcessLookupError):
            if os.getsid(pid) == pid:  # still one of our workers: each leads its own session
                os.killpg(pid, signal.SIGKILL)


def finish(proc, timeout=30):
    """The launcher's (returncode, stdout, stderr, seconds it took from now)."""
    began = time.monotonic()
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr, time.monotonic() - began


def wait_for_workers(tmp_path, n, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while len(worker_pids(tmp_path)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out waiting for the workers to start"
        time.sleep(0.02)
    return worker_pids(tmp_path)


def test_two_workers_get_one_cluster_and_their_own_index(launch, tmp_path):
    logs = tmp_path / "logs"
    code, stdout, stderr, _ = finish(
        launch("--workers", 2, "--out", logs, *worker_command(tmp_path, "ok", "ok"))
    )
    assert code == 0, stderr
    start_line, chief_line = stdout.splitlines()
    worker_line = (logs / "worker-1.log").read_text().strip()
    configs = [json.loads(line.removeprefix("TF_CONFIG ")) for line in (chief_line, worker_line)]
    addresses = configs[0]["cluster"]["worker"]
    assert configs[1]["cluster"] == {"worker": addresses}
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in (0, 1)]
    hosts, ports = zip(*(a.split(":") for a in addresses), strict=True)
    assert hosts == ("127.0.0.1", "127.0.0.1") and len(set(ports)) == 2 and "0" not in ports
    assert start_line == (
        f"run_workers.py: 2 worker(s) on {', '.join(addresses)}; the chief (0) writes here; "
        f"the others log to {logs / 'worker-<i>.log'}"
    )
    assert not (logs / "worker-0.log").exists()


def consecutive_free_ports(n):
    """A port `base` with base, base+1, … base+n-1 free on 127.0.0.1 now."""
    for _ in range(20):
        sockets = [socket.socket() for _ in range(n)]
        try:
            sockets[0].bind(("127.0.0.1", 0))
            base = sockets[0].getsockname()[1]
            for i, s in enumerate(sockets[1:], start=1):
                s.bind(("127.0.0.1", base + i))
            return base
        except (OSError, OverflowError):
            continue
        finally:
            for s in sockets:
                s.close()
    pytest.skip(f"found no {n} consecutive free ports")


@pytest.mark.parametrize("out", [["--out", "trainer-out"], ["--out=trainer-out"]])
def test_port_base_gives_consecutive_ports_and_logs_go_to_the_commands_out(out, launch, tmp_path):
    base = consecutive_free_ports(2)
    command = [*worker_command(tmp_path, "ok", "ok"), *out]
    code, stdout, stderr, _ = finish(launch("--workers", 2, "--port-base", base, *command))
    assert code == 0, stderr
    log = (tmp_path / "trainer-out" / "worker-1.log").read_text()
    config = json.loads(log.removeprefix("TF_CONFIG "))
    assert config["cluster"]["worker"] == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
    assert stdout.splitlines()[0].endswith("the others log to trainer-out/worker-<i>.log")


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_worker_stops_the_other_and_is_named_with_its_code_and_last_line(
    failing, launch, tmp_path
):
    actions = ["sleep", "sleep"]
    actions[failing] = "fail"
    code, _, stderr, seconds = finish(launch("--workers", 2, *worker_command(tmp_path, *actions)))
    assert code == 1
    if failing == 0:  # the chief's stderr streams to the launcher's, then the error
        assert stderr.splitlines() == [
            "working",
            "boom",
            "",
            f"{ERROR}worker 0 exited with code 3: boom",
        ]
    else:  # its log is in the default place, in the launcher's working directory
        log = "runs/workers/worker-1.log"
        assert stderr.splitlines() == [f"{ERROR}worker 1 ({log}) exited with code 3: boom"]
    assert seconds < 20, "the sleeper (60 s) was not stopped by SIGTERM"
    assert not any(alive(pid) for pid in worker_pids(tmp_path))


def test_a_killed_worker_is_named_by_its_signal(launch, tmp_path):
    code, _, stderr, _ = finish(launch("--workers", 2, *worker_command(tmp_path, "sleep", "kill")))
    assert code == 1
    log = "runs/workers/worker-1.log"
    # Its last line is the TF_CONFIG it printed before the kill.
    assert stderr.strip().splitlines() == [
        f"{ERROR}worker 1 ({log}) was killed by SIGKILL: {(tmp_path / log).read_text().strip()}"
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_stops_every_worker(signum, launch, tmp_path):
    proc = launch("--workers", 2, *worker_command(tmp_path, "sleep", "sleep"))
    pids = wait_for_workers(tmp_path, 2, proc)
    proc.send_signal(signum)
    code, _, stderr, seconds = finish(proc)
    assert code == 128 + signum
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines() == [
        f"run_workers.py: interrupted by {name}: stopped 2 worker(s)"
    ]
    assert seconds < 20 and not any(alive(pid) for pid in pids)


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(launch, tmp_path):
    proc = launch("--workers", 2, "--grace", 0.5, *worker_command(tmp_path, "stubborn", "sleep"))
    pids = wait_for_workers(tmp_path, 2, proc)
    proc.send_signal(signal.SIGTERM)
    code, _, _, seconds = finish(proc)
    assert code == 143
    assert 0.45 < seconds < 10  # --grace 0.5 (the default is 5)
    assert not any(alive(pid) for pid in pids)


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--workers", "0", "--", "true"],
            "argument --workers: expected a positive integer, received 0",
        ),
        (
            ["--workers", "2"],
            "no COMMAND to run: give it after --, as in --workers 2 -- python train.py",
        ),
        (
            ["--workers", "2", "--"],
            "no COMMAND to run: give it after --, as in --workers 2 -- python train.py",
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, expected):
    proc = run_script("scripts/run_workers.py", *args, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [ERROR + expected]


def test_a_port_in_use_is_refused_before_any_worker_starts(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        command = worker_command(tmp_path, "ok", "ok")
        proc = run_script("scripts/run_workers.py", "--workers", 2, "--port-base", port, *command)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{ERROR}port {port} on 127.0.0.1 is not free (Address already in use); "
        "try another --port-base"
    ]
    assert proc.stdout == "" and worker_pids(tmp_path) == []


def test_an_out_that_is_a_file_is_refused_before_any_worker_starts(tmp_path):
    (tmp_path / "taken").write_text("")
    command = worker_command(tmp_path, "ok", "ok")
    proc = run_script(
        "scripts/run_workers.py", "--workers", 2, "--out", tmp_path / "taken", *command
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{ERROR}--out {tmp_path / 'taken'} is a file, not a directory"
    ]
    assert proc.stdout == "" and worker_pids(tmp_path) == []
