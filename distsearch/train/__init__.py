"""Training on each worker: the loop (no Ray), the Ray Train side of a worker, a lone worker in its trial's actor with its own checkpoints, spare worker processes."""
