"""keras_bp's literate entry points, one file a command.

Run from a clone as `python scripts/<name>.py`; installed, they are the package
`keras_bp.scripts`, which the `keras-bp` command (`keras_bp.cli.commands`) runs.
"""
