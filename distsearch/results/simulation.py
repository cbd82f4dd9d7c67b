"""A simulation's files: its sweep as a run's tables, and ``simulation.json`` with the sizing figures.

``distsearch simulate`` runs a table through ``distsearch.simulate`` at each worker count and
seed. The first sweep is written as a real run's ``trials.parquet``, ``epochs.parquet`` and
``run.json`` (marked ``simulated``), so ``distsearch report`` reads it; ``simulation.json`` holds
every sweep's figures and, per worker count, the median and 10-90% band over seeds.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Optional, Sequence

from .. import constants as C
from .. import storage
from ..simulate.loop import Simulated, job_for, simulate, table_best
from ..simulate.surrogate import Nearest, leave_one_out
from ..simulate.table import Table, describe
from ..space.names import param_types
from . import files

SIMULATION_FILE = "simulation.json"


def band(values: Sequence[Optional[float]]) -> Optional[dict[str, float]]:
    """Median and the 10th and 90th percentiles (nearest rank) of the values that are not None."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None

    def rank(q: float) -> float:
        return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]

    return {"median": statistics.median(xs), "p10": rank(0.1), "p90": rank(0.9), "n": len(xs)}


def full_trial_s(table: Table) -> Optional[float]:
    """R: one full trial's time, the median over configurations that reached max_epochs."""
    full = [sum(c.seconds) for c in table.curves if len(c.metrics) >= table.max_epochs]
    return statistics.median(full) if full else None


def run_simulations(
    table: Table,
    workers: Sequence[int],
    seeds: int,
    search: Optional[str] = None,
    scheduler: Optional[str] = None,
    trials: Optional[Callable[[int], int]] = None,
) -> tuple[list[Simulated], dict[str, Any]]:
    """Every (workers, seed) sweep over ``table``, and ``simulation.json``'s content. ``trials``
    gives each worker count its number of trials (default: the table's job's)."""
    base = job_for(table, search=search, scheduler=scheduler)
    surrogate = Nearest(table)
    sims = [
        simulate(table, job_for(table, seed=base.seed + k, search=search, scheduler=scheduler, trials=trials(n) if trials else None), n, surrogate)
        for n in workers
        for k in range(seeds)
    ]
    r = full_trial_s(table)
    sizes = []
    for n in workers:
        mine = [s for s in sims if s.workers == n]
        sizes.append(
            {
                "workers": n,
                "trials": trials(n) if trials else base.budget.num_trials,
                "wall_s": band([s.wall_s for s in mine]),
                "worker_hours": band([s.busy_s / 3600 for s in mine]),
                "best": band([s.best for s in mine]),
                "time_to_near_best_s": band([s.time_to_near_best_s for s in mine]),
                "time_to_near_best_R": band([s.time_to_near_best_s / r if r and s.time_to_near_best_s is not None else None for s in mine]),
                "reached_near_best": sum(s.time_to_near_best_s is not None for s in mine) / len(mine),
                "utilisation": band([s.utilisation for s in mine]),
            }
        )
    total = sum(s.worker_epochs for s in sims)
    info = {
        "source": table.source,
        "table": describe(table),
        "search": sims[0].search if sims else None,
        "seeds": [base.seed + k for k in range(seeds)],
        "full_trial_s": r,
        "table_best": table_best(table, base.metric, base.mode),
        "surrogate": {
            "share": sum(s.surrogate_results for s in sims) / total if total else 0.0,
            "leave_one_out": leave_one_out(table, base.metric, base.mode),
        },
        "sizes": sizes,
        "runs": [s.summary() for s in sims],
    }
    return sims, info


def write_simulation(out: str, table: Table, sim: Simulated, info: dict[str, Any]) -> None:
    """``sim`` as a run's files in ``out``, and ``simulation.json``."""
    trials = files.trials_frame(sim.trial_rows, param_types(job_for(table).space))
    files.write_tables(out, trials, files.epochs_frame(sim.epoch_rows))
    counts = {s: int((trials[C.STATUS] == s).sum()) for s in C.STATUSES}
    meta = {
        "run_id": f"simulated-w{sim.workers}-s{sim.seed}",
        "simulated": True,
        "job": sim.job,
        "search": {"summary": sim.search, "seed": sim.seed},
        "started_at": "1970-01-01T00:00:00+00:00",
        "finished_at": sim.trial_rows and max(r[C.ENDED_AT] for r in sim.trial_rows).isoformat(),
        "sweep_wall_seconds": sim.wall_s,
        "max_concurrent_trials": sim.workers,
        "status_counts": counts,
    }
    storage.write_json(storage.join(out, C.RUN_FILE), meta)
    storage.write_json(storage.join(out, SIMULATION_FILE), info)


def format_sizes(info: dict[str, Any]) -> str:
    """The sizing answer: per worker count, wall time, worker-hours and best metric (median, 10-90%)."""

    def show(b: Optional[dict[str, float]], unit: str = "", scale: float = 1.0) -> str:
        if not b:
            return "-"
        return f"{b['median'] * scale:.4g}{unit} [{b['p10'] * scale:.4g}, {b['p90'] * scale:.4g}]"

    lines = [
        f"{info['table']}; {info['search']}, seeds {info['seeds'][0]}..{info['seeds'][-1]}; one full trial R = {info['full_trial_s'] or 0:.1f} s",
        f"surrogate: {info['surrogate']['share']:.1%} of results from configurations the table lacks"
        + (
            "; leave-one-out error of the best metric: mean {mean_abs_error:.4f}, median {median_abs_error:.4f}; "
            "same half of the table {same_half:.0%}".format(**info["surrogate"]["leave_one_out"])
            if info["surrogate"]["leave_one_out"]
            else ""
        ),
        "workers | trials | wall time (median [10%, 90%]) | worker-hours | best metric | time to within 0.5% of the table's best (R) | utilisation",
    ]
    for s in info["sizes"]:
        lines.append(
            f"{s['workers']:>7} | {s['trials']:>6} | {show(s['wall_s'], ' s')} | {show(s['worker_hours'], ' h')} | {show(s['best'])} | "
            f"{show(s['time_to_near_best_R'])} ({s['reached_near_best']:.0%} reached) | {show(s['utilisation'])}"
        )
    return "\n".join(lines)
