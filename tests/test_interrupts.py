"""Stop requests in-process: where the loop stops, what it saves, and the lock it holds."""

import contextlib
import os
import signal
import time

import pytest

from keras_bp.config import LoopConfig, Speed
from keras_bp.runtime.errors import Interrupted, UsageError
from keras_bp.runtime.interrupts import StopRequest, stop_requests
from keras_bp.runtime.runlock import RunLock
from keras_bp.training import loop, runlog
from keras_bp.training.compiled import CompiledSteps

# 256 samples, batch 24: calls of 3 steps, 3, 3, 1 (step 10), then the partial batch of 16.
CONFIG = dict(gradients="manual", epochs=2, batch_size=24, seed=5, speed=Speed(3))


def _stop_after(monkeypatch, last_call):
    """Request a stop as the call `last_call(indices)` picks out returns."""
    request = StopRequest()
    monkeypatch.setattr(runlog, "stop_requests", contextlib.contextmanager(lambda: (yield request)))
    run = CompiledSteps.run

    def run_then_signal(self, x, y, indices):
        result = run(self, x, y, indices)
        if last_call(indices) and request.requested is None:
            request.requested = signal.SIGINT
        return result

    monkeypatch.setattr(CompiledSteps, "run", run_then_signal)


@pytest.mark.parametrize(
    "name, last_call, where, resumed_at",
    [
        (
            "mid-epoch",
            lambda i: i.shape == (3, 24),
            "epoch 1 of 2, step 3",
            {"epoch": 1, "step": 3},
        ),
        (
            "epoch's last call",
            lambda i: i.shape[1] == 16,
            "the end of epoch 1 of 2",
            {"epoch": 2, "step": 0},
        ),
    ],
)
def test_a_stop_saves_where_it_stopped_and_resumes_to_the_same_weights(
    name, last_call, where, resumed_at, tmp_path, synthetic_data, monkeypatch
):
    _, whole = loop.train_loop(LoopConfig(**CONFIG, out=tmp_path / "whole"), synthetic_data, 0)
    config = LoopConfig(**CONFIG, out=tmp_path / "stopped")
    with monkeypatch.context() as patch:
        _stop_after(patch, last_call)
        with pytest.raises(Interrupted) as stopped:
            loop.train_loop(config, synthetic_data, verbose=0)
    assert stopped.value.signum == signal.SIGINT
    assert str(stopped.value).startswith(f"saved a checkpoint at {where}, in ")
    _, resumed = loop.train_loop(config, synthetic_data, verbose=0)
    assert resumed["resumed_at"] == resumed_at
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert resumed["history"] == whole["history"]


def test_a_held_directory_is_refused_by_the_trainer_itself(tmp_path, synthetic_data):
    with RunLock(tmp_path):
        with pytest.raises(UsageError, match=rf"is in use by another run \(PID {os.getpid()}\)"):
            loop.train_loop(LoopConfig(**CONFIG, out=tmp_path), synthetic_data, verbose=0)
    assert not (tmp_path / "metrics.json").exists()


def test_stop_requests_puts_back_the_handlers_and_the_wakeup_fd_it_found():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with stop_requests() as request:
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, not fatal
        for _ in range(200):
            if request.requested:
                break
            time.sleep(0.01)  # the watcher thread records it
    assert request.requested == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before
    assert signal.set_wakeup_fd(-1) == -1  # none was set before, none is left
