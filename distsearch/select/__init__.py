"""The model a user takes away: scored once on the test split, the ensemble, and load_model."""
