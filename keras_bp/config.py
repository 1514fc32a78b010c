"""Every setting of a training run, with each default defined once. No TensorFlow here.

`FitConfig` drives `model.fit` (`keras_bp.training.recipe`), `LoopConfig` the custom loop with
either gradient source (`keras_bp.training.loop`). Both carry one `Speed`: how the trainer
executes. The CLI turns options into these configs; the trainers, their metrics and their resume
identity read them.
"""

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

from keras_bp.runtime.backend_start import BACKENDS, refusal

GRADIENT_SOURCES = ("tape", "manual")
# tf.distribute's data parallelism: replicas in one process, or workers from TF_CONFIG.
STRATEGIES = ("mirrored", "multi-worker")
OPTIMIZERS = ("rmsprop", "sgd")
# The learning rates of keras.optimizers.RMSprop and SGD; keras_bp's hand-written optimizers
# share them (a test checks all three places agree).
DEFAULT_LEARNING_RATES = {"rmsprop": 1e-3, "sgd": 0.01}
# Where each trainer writes its run unless told otherwise.
DEFAULT_OUT = {
    "fit": "runs/fit",
    "tape": "runs/custom_loop",
    "manual": "runs/manual",
    "compare": "runs/compare",  # scripts/compare.py: one subdirectory per trainer
    "report": "runs/report",  # scripts/report.py: one subdirectory per trainer and seed
}
# Early stopping holds out the last sixth of the training images (10,000 of MNIST's 60,000) as
# validation: the part Keras's `validation_split=1/6` takes, the same for all three trainers.
VALIDATION_FRACTION = 6


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, received {value!r}")


@dataclass(frozen=True)
class Speed:
    """How a trainer executes. None of it changes the update rule, but each changes the last bits
    of the weights, so a run is resumed only with the speed it started with.

    Args:
        steps_per_call: training steps per compiled call (`fit`'s `steps_per_execution`).
        xla: compile with XLA (`jit_compile=True`). `False` leaves `fit` on Keras's default.
        fused: RMSprop's update as one kernel (`keras_bp.fused`). A config with another
            optimizer sets it to `False`: it runs that optimizer as written.
    """

    steps_per_call: int = 1
    xla: bool = False
    fused: bool = False

    def __post_init__(self):
        _check_positive_int("steps_per_call", self.steps_per_call)


# fit as published: Keras's one step per call and Keras's RMSprop. The loops: 468 full batches of
# MNIST = 9 calls of 52, and RMSprop's update as one fused kernel, the same rule (keras_bp.fused).
FIT_SPEED = Speed(steps_per_call=1)
LOOP_SPEED = Speed(steps_per_call=52, fused=True)
# The fastest `fit` that keeps the recipe's updates (`make bench`): not what `make train` runs.
FIT_FASTEST = Speed(steps_per_call=32, fused=True)


@dataclass(frozen=True)
class TrainConfig:
    """What every trainer takes; the defaults are the recipe's.

    Args:
        epochs, batch_size: the recipe's `fit(epochs=5, batch_size=128)`.
        seed: fixes the initial weights and every epoch's shuffle.
        train_samples: train on the first N training images; `None`: all of them.
        optimizer: `"rmsprop"` (the recipe's) or `"sgd"`.
        learning_rate: `None` for the optimizer's default (`DEFAULT_LEARNING_RATES`); `fit`
            also takes a `keras.optimizers.schedules.LearningRateSchedule`.
        deterministic: bit-identical reruns (`keras_bp.training.reproducible`).
        fresh: delete the run's resume state in `out` instead of resuming from it.
        out: the run's directory; `None` for the trainer's `DEFAULT_OUT`.
        speed: how the trainer executes (`Speed`).
        early_stopping: `None`, or the patience `P`: hold out the last sixth of the training
            images as validation, stop once the validation loss has not improved for `P`
            epochs, and end with the weights of the epoch where it was lowest (Keras's
            `EarlyStopping(patience=P, restore_best_weights=True)`).
        tensorboard: a directory for TensorBoard's event files, or `None`. It changes no number.
        strategy: `None` for one device; `"mirrored"`: `replicas` copies of the model in this
            process (`tf.distribute.MirroredStrategy`); `"multi-worker"`: one per process of
            the cluster in `TF_CONFIG` (`MultiWorkerMirroredStrategy`). The global batch
            `batch_size` is split evenly across the replicas (`keras_bp.training.distribute`).
        replicas: `"mirrored"`'s replica count (CPU devices, or the GPUs when there are).
        backend: Keras's backend, `"tensorflow"`, `"jax"` or `"torch"`: the same model, data,
            initial weights and batches on each (`gradients.tensorflow_initial_weights`,
            `training.fit_input`). The fused kernel, XLA and tf.distribute are TensorFlow's,
            refused on the others.
    """

    epochs: int = 5
    batch_size: int = 128
    seed: int = 0
    train_samples: int | None = None
    optimizer: str = "rmsprop"
    learning_rate: object = None
    deterministic: bool = False
    fresh: bool = False
    out: Path | None = None
    speed: Speed = FIT_SPEED
    early_stopping: int | None = None
    tensorboard: Path | None = None
    strategy: str | None = None
    replicas: int | None = None
    backend: str = "tensorflow"

    trainer: ClassVar[str]  # "fit", "tape" or "manual": set by each subclass

    def __post_init__(self):
        if type(self) is TrainConfig:
            raise TypeError("TrainConfig is the shared base: use FitConfig or LoopConfig")
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("batch_size", self.batch_size)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, received {self.seed!r}")
        if self.seed >= 2**32:  # keras.utils.set_random_seed's range
            raise ValueError(
                f"seed: expected at most 2**32 - 1 = {2**32 - 1}, received {self.seed}"
            )
        if self.train_samples is not None:
            _check_positive_int("train_samples", self.train_samples)
        if self.early_stopping is not None:
            _check_positive_int("early_stopping", self.early_stopping)
        self._check_strategy()
        self._check_backend()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer: expected one of {OPTIMIZERS}, received {self.optimizer!r}"
            )
        lr = self.learning_rate
        if isinstance(lr, int | float) and not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"learning_rate: expected a finite number >= 0, received {lr}")
        if self.speed.fused and self.optimizer != "rmsprop":
            # The loops fuse RMSprop's update by default; any other optimizer runs as written.
            object.__setattr__(self, "speed", replace(self.speed, fused=False))
        if self.out is None:
            object.__setattr__(self, "out", Path(DEFAULT_OUT[self.trainer]))
        object.__setattr__(self, "out", Path(self.out))
        if self.tensorboard is not None:
            object.__setattr__(self, "tensorboard", Path(self.tensorboard))

    def _check_strategy(self):
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {STRATEGIES}, received {self.strategy!r}")
        if self.strategy is not None and self.speed.xla:
            raise ValueError("speed.xla: not with a strategy; its steps run without XLA")
        if self.replicas is None:
            if self.strategy == "mirrored":
                raise ValueError("replicas: the mirrored strategy needs a replica count")
            return
        _check_positive_int("replicas", self.replicas)
        if self.strategy != "mirrored":
            raise ValueError("replicas: applies to the mirrored strategy only")
        if self.batch_size % self.replicas:
            raise ValueError(
                f"replicas: {self.replicas} replicas do not divide the batch of "
                f"{self.batch_size} evenly"
            )
        if self.train_samples is not None:  # else the trainer checks the data it is given
            held_out = validation_samples(self.train_samples, self.early_stopping)
            short = replica_shortfall(self.replicas, self.train_samples - held_out, self.batch_size)
            if short:
                raise ValueError(f"replicas: {short}")

    def _check_backend(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, received {self.backend!r}")
        if self.backend == "tensorflow":
            return
        fused = self.speed.fused and self.optimizer == "rmsprop"  # other optimizers run unfused
        for what, used in [
            ("the fused RMSprop kernel (--fused)", fused),
            ("XLA (--xla)", self.speed.xla),
            ("tf.distribute (--strategy)", self.strategy),
        ]:
            if used:
                raise ValueError(refusal(self.backend, what))

    @property
    def resolved_learning_rate(self):
        """The learning rate training uses: the one given, or the optimizer's default."""
        if self.learning_rate is None:
            return DEFAULT_LEARNING_RATES[self.optimizer]
        return self.learning_rate


@dataclass(frozen=True)
class FitConfig(TrainConfig):
    """`TrainConfig` for `model.fit`: `speed.steps_per_call` is `steps_per_execution`.

    Args:
        keras_shuffle: feed `fit` the arrays and let Keras shuffle them. With a seed set,
            Keras's TensorFlow backend then repeats one order in every epoch. By default `fit`
            gets a new order each epoch, as the unseeded published recipe does, fixed by
            `(seed, epoch)`: the loops' order (`keras_bp.training.fit_input`).
    """

    trainer: ClassVar[str] = "fit"
    keras_shuffle: bool = False

    def __post_init__(self):
        if self.strategy == "multi-worker":
            raise ValueError(
                "strategy: Keras 3's fit fails under MultiWorkerMirroredStrategy "
                "(keras-team/keras#20585); train multi-worker with the loop "
                "(scripts/custom_loop.py, scripts/manual_backprop.py), or fit with mirrored"
            )
        super().__post_init__()


@dataclass(frozen=True)
class LoopConfig(TrainConfig):
    """`TrainConfig` for the custom loop.

    Args:
        gradients: where the gradients come from: `"tape"` or `"manual"` (hand-written).
        checkpoint_every: checkpoint at the first call boundary at least this many steps after
            the last save, and at every epoch end; 0: at epoch ends only.
    """

    gradients: str = "tape"
    checkpoint_every: int = 100
    speed: Speed = field(default=LOOP_SPEED)

    def __post_init__(self):
        if self.gradients not in GRADIENT_SOURCES:
            raise ValueError(
                f"gradients: expected one of {GRADIENT_SOURCES}, received {self.gradients!r}"
            )
        if self.backend != "tensorflow":
            raise ValueError(refusal(self.backend, "the compiled training loop"))
        if isinstance(self.checkpoint_every, bool) or not (
            isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0
        ):
            raise ValueError(
                f"checkpoint_every: expected an integer >= 0, received {self.checkpoint_every!r}"
            )
        super().__post_init__()

    @property
    def trainer(self):
        return self.gradients


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Batches in one pass over `samples`: the last one is partial when they don't divide."""
    return math.ceil(samples / batch_size)


def replica_shortfall(replicas: int, samples: int, batch_size: int):
    """Why `replicas` cannot all be fed every batch of an epoch of `samples`, or `None`: each
    needs a row of every batch, the partial last one included."""
    last = samples % batch_size or batch_size
    if replicas <= last:
        return None
    return (
        f"the last batch of each epoch holds {last} of the {samples} training images "
        f"({samples // batch_size} x {batch_size} + {last}), too few to give each of {replicas} "
        f"replicas a row; use at most {last} replicas, or another --train-samples or --batch-size"
    )


def validation_samples(samples: int, early_stopping) -> int:
    """How many of `samples` training images early stopping holds out; 0 without it."""
    return samples // VALIDATION_FRACTION if early_stopping is not None else 0


def field_names(cls) -> set:
    return {f.name for f in fields(cls)}
