"""Accuracy against model size on the simulator: MOASHA's searches against ASHA on one metric, by hypervolume.

    python benchmarks/pareto.py [--seeds 50] [--workers 8] [--out pareto.parquet]
    python benchmarks/pareto.py smoke       # 2 seeds, 2 workers (seconds; CI runs it)
    python benchmarks/pareto.py real [--seeds 1]   # the shipped jobs/pareto.yaml for real, with and without objectives

The quickstart table's 128 recorded curves (an MLP against a CNN on digits) get each
configuration's cost: ``num_params``, counted by building its model (exact, unlike a latency
timed on a shared machine). Each method runs ``max(48, 2 x W)`` trials at W workers in simulated
time, through the job's own plan:

- ``random+asha``: ASHA on val_accuracy alone, what a single-metric job does;
- ``random+asha (weighted sum)``: ASHA on val_accuracy - 0.1 x the normalised log size, Ray
  Tune's answer to several objectives;
- ``random+moasha``, ``tpe+moasha``, ``nsga2+moasha``: the job with objectives val_accuracy (max)
  and num_params (min).

The hypervolume of every result reported so far (accuracy from 0, log10 size normalised over the
table's configurations to 0..1, reference 1.1) is taken after each worker-epoch. The target of a
worker count is random+asha's median final hypervolume; per method, the median worker-epochs to
reach it as a ratio to random+asha's own, with a 5-95% bootstrap interval over seeds. The issue's
test: the same hypervolume on at most 0.6 of the worker-epochs.

``real`` runs ``jobs/pareto.yaml`` with ``distsearch run`` as a user would, per seed twice: with
objectives val_accuracy and num_params (random+MOASHA) and with the job's metric alone
(random+ASHA), and prints the same hypervolume against the worker-epochs each run spent (its
epochs in arrival order, times its workers per trial).
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script; imported as benchmarks.pareto, the caller's sys.path already serves
    sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_recorded, tables_parser  # noqa: E402
from benchmarks.evidence import ratio_columns  # noqa: E402
from distsearch import constants as C  # noqa: E402
from distsearch.search.pareto import hypervolume  # noqa: E402
from distsearch.simulate import table as tables  # noqa: E402
from distsearch.simulate.loop import job_for, simulate  # noqa: E402
from distsearch.simulate.surrogate import Nearest  # noqa: E402
from distsearch.space.names import param_name  # noqa: E402
from distsearch.spec.model import JobSpec  # noqa: E402

TABLE = ROOT / "benchmarks" / "tables" / "quickstart.parquet"
WEIGHTED = "weighted"  # the scalarised metric's name in the curves
WEIGHT = 0.1
MIN_TRIALS = 48
BASELINE = "random+asha"
METHODS = (BASELINE, "random+asha (weighted sum)", "random+moasha", "tpe+moasha", "nsga2+moasha")
TARGET_RATIO = 0.6


def with_costs(table: tables.Table) -> tables.Table:
    """``table`` with each curve's ``num_params`` and the weighted sum in every epoch's metrics."""
    from distsearch.tasks import make_task

    task = make_task(table.job["task"], table.job.get("task_options") or {})
    splits = task.splits(seed=table.job.get("seed", 0))
    out = copy.deepcopy(table)
    sizes = [size(task, c.params, splits) for c in out.curves]
    lo, hi = math.log10(min(sizes)), math.log10(max(sizes))
    for curve, n in zip(out.curves, sizes, strict=True):
        for m in curve.metrics:
            m[C.NUM_PARAMS] = n
            m[WEIGHTED] = m["val_accuracy"] - WEIGHT * (math.log10(n) - lo) / (hi - lo)
    out.source = {**out.source, "size_log10_range": [lo, hi]}
    return out


def spec_of(table: tables.Table, name: str, seed: int, trials: int) -> JobSpec:
    search = name.split("+", 1)[0]
    base = job_for(table, seed=seed, search="tpe" if search == "nsga2" else search, scheduler="asha", trials=trials).to_dict()
    if "weighted" in name:
        base.update(metric=WEIGHTED, mode="max")
    elif "moasha" in name:
        base.update(objectives=[{"val_accuracy": "max"}, {C.NUM_PARAMS: "min"}], search={**base["search"], "algorithm": search})
    return JobSpec.model_validate(base)


def points(sim, lo: float, hi: float) -> np.ndarray:
    """Every reported (accuracy, size) as minimised, normalised coordinates, in arrival order."""
    rows = [(r["val_accuracy"], r[C.NUM_PARAMS]) for r in sim.epoch_rows if r.get("val_accuracy") is not None]
    return np.array([[-acc, (math.log10(n) - lo) / (hi - lo)] for acc, n in rows], dtype=float).reshape(-1, 2)


REFERENCE = (0.0, 1.1)


def hv_after(pts: np.ndarray, k: int) -> float:
    return hypervolume(pts[:k], REFERENCE)


def epochs_to(pts: np.ndarray, target: float) -> float:
    """The fewest worker-epochs whose results reach ``target`` hypervolume (it grows with each): a bisection."""
    if not len(pts) or hv_after(pts, len(pts)) < target:
        return np.inf
    lo, hi = 1, len(pts)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if hv_after(pts, mid) < target else (lo, mid)
    return float(lo)


def run(seeds: int, workers: list[int]) -> pd.DataFrame:
    table = with_costs(tables.load(str(TABLE)))
    lo, hi = table.source["size_log10_range"]
    surrogate = Nearest(table)
    rng = np.random.default_rng(0)
    rows = []
    for n in workers:
        trials = max(MIN_TRIALS, 2 * n)
        runs = {
            m: [points(simulate(table, spec_of(table, m, table.job.get("seed", 0) + k, trials), n, surrogate), lo, hi) for k in range(seeds)]
            for m in METHODS
        }
        finals = {m: [hv_after(p, len(p)) for p in r] for m, r in runs.items()}
        target = float(np.quantile(finals[BASELINE], 0.5, method="lower"))
        base = np.array([epochs_to(p, target) for p in runs[BASELINE]])
        for m, r in runs.items():
            spent = np.array([epochs_to(p, target) for p in r])
            rows.append(
                {
                    "workers": n,
                    "trials": trials,
                    "method": m,
                    **ratio_columns(spent, base, rng),
                    "median final hypervolume": float(np.median(finals[m])),
                    "target": target,
                    "worker-epochs": float(np.median([len(p) for p in r])),
                }
            )
    return pd.DataFrame(rows)


def real(seeds: int) -> pd.DataFrame:
    """``jobs/pareto.yaml`` for real, per seed with objectives (accuracy, size) and without."""
    import tempfile

    import yaml

    from benchmarks._common import run_cli

    base = yaml.safe_load((ROOT / "jobs" / "pareto.yaml").read_text())
    rows = []
    for seed in range(seeds):
        for name, objectives in (("random+moasha", [{"val_accuracy": "max"}, {C.NUM_PARAMS: "min"}]), (BASELINE, [])):
            with tempfile.TemporaryDirectory() as storage:
                raw = {**base, "seed": seed, "objectives": objectives, "constraints": {}, "search": {"algorithm": "random"}, "storage": storage}
                raw["ensemble"] = {"enabled": False}
                run, command_s = run_cli(raw, Path(storage), None)
            epochs = run["epochs"].sort_values(C.TIMESTAMP)
            if C.NUM_PARAMS not in epochs:  # a single-metric run measures no cost: count each trial's model
                sizes = _sizes(run, base)
                epochs = epochs.assign(**{C.NUM_PARAMS: epochs[C.TRIAL_ID].map(sizes)})
            rows.append({"seed": seed, "method": name, "command_s": command_s, "epochs": epochs[["val_accuracy", C.NUM_PARAMS, C.WORLD_SIZE]]})
    lo = math.log10(min(r["epochs"][C.NUM_PARAMS].min() for r in rows))
    hi = math.log10(max(r["epochs"][C.NUM_PARAMS].max() for r in rows))
    out = []
    for r in rows:
        e = r["epochs"]
        pts = np.array([[-a, (math.log10(n) - lo) / (hi - lo)] for a, n in zip(e["val_accuracy"], e[C.NUM_PARAMS], strict=True)])
        spent = np.cumsum(e[C.WORLD_SIZE].astype(float).to_numpy())
        final = hv_after(pts, len(pts))
        out.append(
            {
                "seed": r["seed"],
                "method": r["method"],
                "command_s": r["command_s"],
                "worker-epochs": float(spent[-1]),
                "final hypervolume": final,
                "pts": pts,
                "spent": spent,
            }
        )
    for seed in range(seeds):
        mine, base_run = (next(o for o in out if o["seed"] == seed and o["method"] == m) for m in ("random+moasha", BASELINE))
        target = base_run["final hypervolume"]
        k = epochs_to(mine["pts"], target)
        mine["worker-epochs to the baseline's hypervolume"] = float(mine["spent"][int(k) - 1]) if np.isfinite(k) else np.inf
        base_run["worker-epochs to the baseline's hypervolume"] = base_run["worker-epochs"]
    return pd.DataFrame([{k: v for k, v in o.items() if k not in ("pts", "spent")} for o in out])


def _sizes(run: dict, job: dict) -> dict[str, float]:
    """Each trial's ``num_params``, from its hyperparameters (trials.parquet's hp_ columns)."""
    from distsearch.tasks import make_task

    task = make_task(job["task"], job.get("task_options") or {})
    splits = task.splits(seed=0)
    columns = [c for c in run["trials"].columns if c.startswith(C.HP_PREFIX)]
    return {t[C.TRIAL_ID]: size(task, {param_name(c): t[c] for c in columns if pd.notna(t[c])}, splits) for _, t in run["trials"].iterrows()}


def size(task, params: dict, splits) -> float:
    """``num_params`` of the model ``task`` builds for ``params``."""
    return float(sum(p.numel() for p in task.build_model(params, splits).parameters()))


def main() -> int:
    p = tables_parser(__doc__, None, (8,), "Parquet of every row")  # --seeds: 1 for real runs, 50 simulated
    args = p.parse_args()
    print(machine_line())
    if args.tables == ["real"]:
        df = real(args.seeds or 1)
        print(markdown(df))
        if args.out:
            df.to_parquet(args.out)
        return 0
    smoke = args.tables == ["smoke"]
    seeds, workers = (2, [2]) if smoke else (args.seeds or 50, [int(w) for w in str(args.workers).split(",")])
    df = run(seeds, workers)
    for n, g in df.groupby("workers", sort=False):
        print(f"\n## {n} workers, {g['trials'].iloc[0]} trials a sweep, {seeds} seeds; target hypervolume {g['target'].iloc[0]:.4g}\n")
        print(markdown(g.drop(columns=["workers", "trials", "target"])))
    print(f"\n## Target: the same hypervolume on at most {TARGET_RATIO} of {BASELINE}'s worker-epochs\n")
    for _, r in df[df["method"].str.contains("moasha")].iterrows():
        met = r["ratio"] <= TARGET_RATIO
        print(
            f"- {r['method']} at {r['workers']} workers: ratio {r['ratio']:.3g} ({r['ratio 5%']:.3g}-{r['ratio 95%']:.3g}): {'met' if met else 'missed'}"
        )
    if args.out and not smoke:
        df.to_parquet(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("pareto", main, default_out="pareto.parquet"))
