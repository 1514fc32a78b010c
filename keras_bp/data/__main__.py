"""`python -m keras_bp.data`: fetch and verify MNIST, and say where it came from."""

from keras_bp.data import main

if __name__ == "__main__":
    raise SystemExit(main())
