"""`python -m keras_bp`: the same as the `keras-bp` command."""

from keras_bp.cli.commands import main

main()
