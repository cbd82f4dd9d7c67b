"""The sweep on Ray Tune: the only package that imports ``ray.tune``.

``run_sweep`` runs one job's trials under ASHA on a connected cluster. Its modules, in the order
a sweep uses them: ``search`` (the space as Tune domains, the searcher), ``trial`` (the function
each trial's Tune actor runs), ``cleanup`` (releasing worker groups, SIGTERM, the end-of-sweep
sweep), ``recording`` (what the driver keeps of each trial), ``progress`` (the live line, the
heartbeat, TensorBoard), ``resume`` (what earlier drivers of a run left, ASHA's replay) and
``run`` (the sweep itself).
"""

from .run import SweepOutcome, run_sweep

__all__ = ["SweepOutcome", "run_sweep"]
