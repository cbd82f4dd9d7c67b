"""The search: the plan built once from a job, and the searchers, schedulers and objective it names."""
