"""The runtime plumbing: user-facing errors, atomic files, one run per directory, signals,
TensorFlow started quietly, the wall clock, the cluster's TF_CONFIG. None imports TensorFlow.
"""
