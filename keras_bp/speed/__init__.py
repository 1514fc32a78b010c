"""Speed: the matmul and training floors, the bench against them, TensorFlow's profiler op by op."""
