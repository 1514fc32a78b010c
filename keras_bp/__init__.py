"""keras_bp: backpropagation on the classic Keras MNIST example, trained three ways.

- `make train`: the recipe exactly, through `model.fit` (`keras_bp.training.recipe`);
- `make custom-loop`: the custom loop with `tf.GradientTape` gradients (`keras_bp.training.loop`);
- `make manual`: the same loop with hand-written gradients (`keras_bp.backprop`), no autodiff.

Start reading at `keras_bp.reference`: the loop in plain form, with either gradient source
(`keras_bp.gradients`). docs/layout.md maps the modules.

Importing keras_bp before TensorFlow keeps TensorFlow's start-up lines (oneDNN's notice, the
CUDA probe) off the terminal, as keras_bp's commands do; `KERAS_BP_VERBOSE=1` shows them.
TensorFlow reads its log level as it loads, so this has to happen here, first.
"""

from keras_bp.runtime.tensorflow_start import quiet_import as _quiet_import

__version__ = "0.1.0"

_quiet_import()
