"""The simulated backend: recorded learning curves replayed through a plan's real scheduler and searcher.

``table`` reads a recorded run as a table of curves; ``surrogate`` answers for configurations the
table lacks; ``loop`` runs the discrete-event simulation in simulated time.
"""
