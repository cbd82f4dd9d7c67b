"""A run's files and what they answer: Parquet and JSON, figures, the report."""
