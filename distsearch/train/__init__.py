"""Training on each worker: the loop (no Ray), the Ray Train side of a worker, spare worker processes."""
