"""keras_bp: backpropagation on the classic Keras MNIST example, three ways.

- `keras_bp.recipe`: the seed's recipe through `model.fit`;
- `keras_bp.backprop`: forward/backward pairs written out by hand;
- `keras_bp.layers.ManualDense`: a Keras layer whose gradient is the hand-written one.
"""

__version__ = "0.1.0"
