"""The job spec: the model of a job, its sections, YAML as people write it, errors as instructions, the generated doc."""
