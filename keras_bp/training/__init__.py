"""The fast and safe training machinery around the lesson: the compiled steps and loop,
checkpoints and the run log, the `model.fit` recipe with its guards, backup and input, early
stopping, TensorBoard summaries, data-parallel steps, run files and seeding.
"""
