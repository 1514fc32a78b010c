"""The checks: hand-written gradients against autodiff and numerical ones; trainers in lockstep."""
