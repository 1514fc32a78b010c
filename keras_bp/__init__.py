"""keras_bp: backpropagation on the classic Keras MNIST example, trained three ways.

- `make train`: the recipe exactly, through `model.fit` (`keras_bp.training.recipe`);
- `make custom-loop`: the custom loop with `tf.GradientTape` gradients (`keras_bp.training.loop`);
- `make manual`: the same loop with hand-written gradients (`keras_bp.backprop`), no autodiff.

Start reading at `keras_bp.reference`: the loop in plain form, with either gradient source
(`keras_bp.gradients`). The README's Layout section maps the modules.
"""

__version__ = "0.1.0"
