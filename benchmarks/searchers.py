"""Searchers under ASHA: random+ASHA against TPE+ASHA, with FIFO random search as a reference.

Run through ``python benchmarks/search.py searchers [--seeds 5] [--trials 48]`` (this module is
its second half). Each task's job runs ``seeds`` times per method, each a full sweep of
``trials`` trials, one embedded Ray for all (2 CPUs here). Per sweep: the best-so-far validation
metric against worker-epochs spent (every reported epoch times the ranks that trained it, in
the order the driver received them) and the mean number of trials running (time-weighted over
the sweep). Per task and method: the median final best over seeds, and the worker-epochs each
seed needed to reach random+ASHA's median final best (the median over seeds; a seed that never
reaches it counts as not reaching it).

Tasks (short trials, so that 3 x 3 x 5 sweeps fit on 2 cores):
- digits: jobs/quickstart.yaml's space, 9 epochs, ASHA grace 1, reduction factor 3;
- wine: jobs/wine.yaml (a table, one worker per trial), 9 epochs, grace 1; its validation
  accuracy reaches 1.0 early under every method, so it tells the searchers apart little;
- diabetes: jobs/diabetes.yaml (a table, regression, R²: a continuous metric), 27 epochs,
  grace 3 (rungs at 3 and 9);
- charlm: jobs/charlm.yaml's space on the first 8,000 characters of its corpus, sequences of
  64 characters, 6 epochs, grace 1.

Target: TPE+ASHA reaches random+ASHA's median final best on at most 60% of its worker-epochs
on at least 2 of the 3 tasks, with a median final best no worse.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from distsearch import constants as C

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "random+asha": {"search": {"algorithm": "random"}, "asha": True},
    "tpe+asha": {"search": {"algorithm": "tpe"}, "asha": True},
    "random (fifo)": {"search": {"algorithm": "random"}, "asha": False},
}
TARGET_RATIO = 0.60


def jobs(workdir: Path) -> dict[str, dict]:
    from distsearch.tasks.charlm import default_corpus

    load = lambda name: yaml.safe_load((ROOT / "jobs" / f"{name}.yaml").read_text())  # noqa: E731
    digits, wine, diabetes, charlm = load("quickstart"), load("wine"), load("diabetes"), load("charlm")
    digits.update(budget={"max_epochs": 9}, asha={"grace_period_epochs": 1, "reduction_factor": 3})
    wine.update(budget={"max_epochs": 9}, asha={"grace_period_epochs": 1, "reduction_factor": 3})
    wine["task_options"]["path"] = str(ROOT / "jobs" / "data" / "wine.parquet")
    diabetes.update(budget={"max_epochs": 27}, asha={"grace_period_epochs": 3, "reduction_factor": 3})
    diabetes["task_options"]["path"] = str(ROOT / "jobs" / "data" / "diabetes.parquet")
    corpus = workdir / "corpus.txt"
    corpus.write_text(default_corpus()[:8_000], encoding="utf-8")
    charlm["task_options"].update(corpus=str(corpus), seq_len=64)
    charlm.update(budget={"max_epochs": 6}, asha={"grace_period_epochs": 1, "reduction_factor": 3})
    return {"digits": digits, "wine": wine, "diabetes": diabetes, "charlm": charlm}


def _sweep(raw: dict, method: str, seed: int, trials: int, workdir: Path) -> dict:
    from distsearch import read_run, run_job
    from distsearch.spec.model import parse_job

    m = METHODS[method]
    job = {
        **raw,
        "name": f"{raw['name']}-{method.split()[0].replace('+', '-')}-{'asha' if m['asha'] else 'fifo'}-s{seed}",
        "seed": seed,
        "budget": {**raw["budget"], "num_trials": trials},
        "asha": {**raw["asha"], "enabled": m["asha"]},
        "search": m["search"],
        "ensemble": {"enabled": False},
        "storage": str(workdir / "runs"),
    }
    t0 = time.monotonic()
    result = run_job(parse_job(job))
    return {"run": read_run(result.run_dir), "wall_s": time.monotonic() - t0}


def curve(run: dict) -> pd.DataFrame:
    """Best-so-far metric against cumulative worker-epochs, in the order reports arrived."""
    job = run["run"]["job"]
    metric, sign = job["metric"], (1 if job["mode"] == "max" else -1)
    e = run["epochs"].sort_values(C.TIMESTAMP)
    world = e[C.WORLD_SIZE].astype(float) if C.WORLD_SIZE in e else pd.Series(float(job["scaling"]["num_workers"]), index=e.index)
    values = e[metric].astype(float).where(np.isfinite(e[metric].astype(float)))
    best = (sign * values).cummax() * sign
    return pd.DataFrame({"worker_epochs": world.cumsum().to_numpy(), "best": best.to_numpy()})


def mean_running(trials: pd.DataFrame) -> float:
    """Trials running at once, averaged over the sweep's time (from first start to last end)."""
    t = trials.dropna(subset=[C.STARTED_AT, C.ENDED_AT])
    start, end = t[C.STARTED_AT].min(), t[C.ENDED_AT].max()
    span = (end - start).total_seconds()
    return float((t[C.ENDED_AT] - t[C.STARTED_AT]).dt.total_seconds().sum() / span) if span > 0 else float("nan")


def _reached(c: pd.DataFrame, target: float, mode: str) -> float:
    ok = c[c["best"] >= target] if mode == "max" else c[c["best"] <= target]
    return float(ok["worker_epochs"].iloc[0]) if len(ok) else math.inf


def bench(tasks: list[str], seeds: int, trials: int, workdir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Every sweep's figures (one row each), the per-task table, and the curves for the figure."""
    raws = jobs(workdir)
    rows, curves = [], {}
    for task in tasks:
        for seed in range(seeds):
            for method in METHODS:
                s = _sweep(raws[task], method, seed, trials, workdir)
                c = curve(s["run"])
                curves[(task, method, seed)] = c
                rows.append(
                    {
                        "task": task,
                        "method": method,
                        "seed": seed,
                        "final_best": float(c["best"].iloc[-1]),
                        "worker_epochs": float(c["worker_epochs"].iloc[-1]),
                        "mean_running": mean_running(s["run"]["trials"]),
                        "stopped_early": int((s["run"]["trials"][C.STATUS] == C.STATUS_STOPPED).sum()),
                        "sweep_s": s["wall_s"],
                    }
                )
                print(f"{task} seed {seed} {method}: best {rows[-1]['final_best']:.4f} on {rows[-1]['worker_epochs']:.0f} worker-epochs, "
                      f"{rows[-1]['mean_running']:.2f} running, {s['wall_s']:.0f} s", flush=True)  # fmt: skip
    per_sweep = pd.DataFrame(rows)
    table = []
    for task in tasks:
        mode = raws[task]["mode"]
        mine = per_sweep[per_sweep["task"] == task]
        target = float(mine[mine["method"] == "random+asha"]["final_best"].median())
        for method in METHODS:
            m = mine[mine["method"] == method]
            reach = [_reached(curves[(task, method, seed)], target, mode) for seed in m["seed"]]
            table.append(
                {
                    "task": task,
                    "method": method,
                    "median_final_best": float(m["final_best"].median()),
                    "min_final_best": float(m["final_best"].min()),
                    "max_final_best": float(m["final_best"].max()),
                    "target (random+asha median)": target,
                    "seeds_reaching": int(sum(math.isfinite(r) for r in reach)),
                    "median_worker_epochs_to_target": float(np.median(reach)),
                    "median_worker_epochs_total": float(m["worker_epochs"].median()),
                    "mean_running": float(m["mean_running"].mean()),
                }
            )
    table = pd.DataFrame(table)
    base = table[table["method"] == "random+asha"].set_index("task")["median_worker_epochs_to_target"]
    table["to_target_vs_random+asha"] = [r / base[t] for t, r in zip(table["task"], table["median_worker_epochs_to_target"], strict=True)]
    return per_sweep, table, curves


def verdict(table: pd.DataFrame, modes: dict[str, str]) -> tuple[int, list[str]]:
    """How many tasks meet the target, and one line per task saying why or why not."""
    lines, met = [], 0
    for task, t in table[table["method"] == "tpe+asha"].set_index("task").iterrows():
        rnd = table[(table["task"] == task) & (table["method"] == "random+asha")].iloc[0]
        no_worse = t["median_final_best"] >= rnd["median_final_best"] if modes[task] == "max" else t["median_final_best"] <= rnd["median_final_best"]
        ok = t["to_target_vs_random+asha"] <= TARGET_RATIO and no_worse
        met += ok
        lines.append(
            f"{task}: TPE+ASHA needs {t['to_target_vs_random+asha']:.2f} of random+ASHA's worker-epochs to reach its median final best; "
            f"median final best {t['median_final_best']:.4f} vs {rnd['median_final_best']:.4f}: {'met' if ok else 'missed'}"
        )
    return met, lines


def figure(curves: dict, tasks: list[str], path: Path) -> None:
    """Best-so-far against worker-epochs per task: the median over seeds, and min-max shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in METHODS:
            seeds = [c for (t, m, _), c in curves.items() if t == task and m == method]
            grid = np.linspace(0, max(c["worker_epochs"].max() for c in seeds), 200)
            ys = np.array([np.interp(grid, c["worker_epochs"], c["best"].ffill().bfill(), left=np.nan) for c in seeds])
            med = np.nanmedian(ys, axis=0)
            (line,) = ax.plot(grid, med, label=method)
            ax.fill_between(grid, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=line.get_color(), alpha=0.15)
        ax.set_title(task)
        ax.set_xlabel("worker-epochs")
        ax.set_ylabel("best validation metric so far")
        ax.set_xscale("symlog")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
