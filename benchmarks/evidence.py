"""Which searcher and scheduler, on the simulator's evidence: every pair, every table, 2 to 64 workers, many seeds.

    python benchmarks/evidence.py [TABLE ...] [--seeds 100] [--workers 2,8,64] [--searchers random,tpe,bohb,gp]
                                  [--schedulers fifo,asha,pasha,promote] [--processes 2] [--out evidence.parquet]
    python benchmarks/evidence.py smoke       # one table, 2 seeds, 2 workers (seconds; CI runs it)

Each table (default: every ``benchmarks/tables/*.parquet``) is simulated with every searcher
(random, tpe, bohb, gp; ``--searchers`` picks some) under every scheduler (fifo, asha, pasha, promote), each sweep of max(48, 2 x W)
trials at W workers. The target of a table and worker count is random+ASHA's median final best
over the seeds. Per method it prints the median worker-epochs to reach that target (a seed
that never does counts as never), as a ratio to random+ASHA's own with a 90% bootstrap interval
over seeds, the share of seeds that reach it, and the median final best. Then the issue's test
at 8 workers: a method passes a table when its ratio is at most 0.5 and its median final best
is no worse than random+ASHA's. The figure (beside ``--out``) is the median regret (distance to
the table's best) against worker-epochs at 8 workers, per table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script; imported as benchmarks.evidence, the caller's sys.path already serves
    sys.path.insert(0, str(ROOT))

from benchmarks._common import TablesFailed, machine_line, markdown, per_table, run_recorded, tables_of, tables_parser  # noqa: E402
from distsearch.simulate import table as tables  # noqa: E402
from distsearch.simulate.loop import job_for, simulate, table_best  # noqa: E402
from distsearch.simulate.surrogate import Nearest  # noqa: E402

WORKERS = (2, 8, 64)
SEARCHERS = ("random", "tpe", "bohb", "gp")
SCHEDULERS = ("fifo", "asha", "pasha", "promote")
BASELINE = "random+asha"
MIN_TRIALS = 48
TARGET_RATIO, TARGET_TABLES, TARGET_WORKERS = 0.5, 4, 8
GRID = 40  # points of the regret curves


def method(search: str, scheduler: str) -> str:
    return f"{search}+{scheduler}"


def trace(sim, metric: str, mode: str) -> np.ndarray:
    """The best-so-far metric after each worker-epoch, in the order the results arrived."""
    values = np.array([r.get(metric, np.nan) for r in sim.epoch_rows], dtype=float)
    values = np.where(np.isnan(values), -np.inf if mode == "max" else np.inf, values)
    return np.maximum.accumulate(values) if mode == "max" else np.minimum.accumulate(values)


def epochs_to(best_so_far: np.ndarray, target: float, mode: str) -> float:
    hit = np.nonzero(best_so_far >= target if mode == "max" else best_so_far <= target)[0]
    return float(hit[0] + 1) if len(hit) else np.inf


def ratio(mine: float, base: float) -> float:
    """``mine`` / ``base`` where either may be never (inf): never over never is never too."""
    return float("inf") if not np.isfinite(mine) else mine / base


def ratio_band(mine: np.ndarray, base: np.ndarray, rng: np.random.Generator, draws: int = 1000) -> tuple[float, float, float]:
    """Median of ``mine`` over median of ``base``, with a 5-95% bootstrap interval over seeds."""
    point = ratio(float(np.median(mine)), float(np.median(base)))
    boots = [ratio(float(np.median(rng.choice(mine, len(mine)))), float(np.median(rng.choice(base, len(base))))) for _ in range(draws)]
    lo, hi = np.percentile(np.array(boots, dtype=float), [5, 95], method="lower")
    return point, float(lo), float(hi)


def ratio_columns(spent: np.ndarray, base: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """A method's row of worker-epochs to a target: the median, its ratio to the baseline's
    (``ratio_band``) and the share of seeds that reach it."""
    point, lo, hi = ratio_band(spent, base, rng)
    return {
        "worker-epochs to target": float(np.median(spent)),
        "ratio": point,
        "ratio 5%": lo,
        "ratio 95%": hi,
        "reached": float(np.isfinite(spent).mean()),
    }


def evidence(path: Path, seeds: int, workers=WORKERS, searchers=SEARCHERS, schedulers=SCHEDULERS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One table's rows (per worker count and method) and its regret curves at 8 workers;
    random+ASHA, the baseline, runs whatever ``searchers`` and ``schedulers`` say."""
    table = tables.load(str(path))
    base = job_for(table)
    metric, mode, best = base.metric, base.mode, table_best(table, base.metric, base.mode)
    surrogate = Nearest(table)
    rows, curves = [], []
    rng = np.random.default_rng(0)
    for n in workers:
        trials = max(MIN_TRIALS, 2 * n)
        traces: dict[str, list[np.ndarray]] = {}
        baseline = tuple(BASELINE.split("+"))
        for search, scheduler in [baseline] + [(a, b) for a in searchers for b in schedulers if (a, b) != baseline]:
            runs = []
            for k in range(seeds):
                spec = job_for(table, seed=base.seed + k, search=search, scheduler=scheduler, trials=trials)
                runs.append(trace(simulate(table, spec, n, surrogate), metric, mode))
            traces[method(search, scheduler)] = runs
        # the median final best that at least half of the baseline's seeds reach (with an even
        # count of seeds, np.median would average two finals and neither might reach it)
        target = float(np.quantile([t[-1] for t in traces[BASELINE]], 0.5, method="lower" if mode == "max" else "higher"))
        base_epochs = np.array([epochs_to(t, target, mode) for t in traces[BASELINE]])
        for name, runs in traces.items():
            spent = np.array([epochs_to(t, target, mode) for t in runs])
            finals = [t[-1] for t in runs]
            rows.append(
                {
                    "table": path.stem,
                    "workers": n,
                    "trials": trials,
                    "method": name,
                    **ratio_columns(spent, base_epochs, rng),
                    "median final best": float(np.median(finals)),
                    "target": target,
                    "mode": mode,
                    "worker-epochs": float(np.median([len(t) for t in runs])),
                }
            )
            if n == TARGET_WORKERS:
                longest = max(len(t) for t in runs)
                grid = np.unique(np.linspace(1, longest, GRID).astype(int))
                regret = [[abs(best - t[min(g, len(t)) - 1]) for g in grid] for t in runs]
                curves += [
                    {"table": path.stem, "method": name, "worker-epochs": int(g), "regret": float(r)}
                    for g, r in zip(grid, np.median(regret, axis=0), strict=True)
                ]
    return pd.DataFrame(rows), pd.DataFrame(curves)


def verdict(df: pd.DataFrame) -> list[str]:
    """Per method, the tables at 8 workers where it reaches the target on at most half of random+ASHA's worker-epochs."""
    at = df[df["workers"] == TARGET_WORKERS]
    base = at[at["method"] == BASELINE].set_index("table")["median final best"]
    lines = []
    for name, g in at.groupby("method", sort=False):
        passed = []
        for _, row in g.iterrows():
            mine, theirs = row["median final best"], base[row["table"]]
            no_worse = mine >= theirs if row["mode"] == "max" else mine <= theirs
            if row["ratio"] <= TARGET_RATIO and no_worse:
                passed.append(row["table"])
        ok = len(passed) >= min(TARGET_TABLES, g["table"].nunique())
        lines.append(f"{name}: {len(passed)} of {g['table'].nunique()} tables ({', '.join(passed) or 'none'}){' : meets the target' if ok else ''}")
    return lines


def plot(curves: pd.DataFrame, path: Path):
    """Median regret against worker-epochs at 8 workers, one panel per table, log-scaled regret."""
    from matplotlib import ticker
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(curves["table"]))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.8 * cols, 3.8 * rows), layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for m, g in curves[curves["table"] == name].groupby("method", sort=False):
            style = {"fifo": ":", "asha": "-", "pasha": "--", "promote": "-."}[m.split("+")[1]]
            ax.plot(g["worker-epochs"], g["regret"].clip(lower=1e-6), style, label=m)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # plain numbers, not mathtext
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(f"{name}, {TARGET_WORKERS} workers")
        ax.set_xlabel("worker-epochs")
        ax.set_ylabel("median regret")
        if i == 0:
            ax.legend(fontsize="x-small", ncol=3)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")
    return fig


def main() -> int:
    p = tables_parser(__doc__, 100, WORKERS, "Parquet of every row; the regret figure goes beside it as PNG")
    p.add_argument("--searchers", default=",".join(SEARCHERS), help="comma-separated (random+asha, the baseline, always runs)")
    p.add_argument("--schedulers", default=",".join(SCHEDULERS), help="comma-separated")
    args = p.parse_args()
    print(machine_line())
    paths, smoke = tables_of(args)
    if smoke:
        paths, args.seeds, args.workers = paths[:1], 2, "2"
    workers = [int(w) for w in args.workers.split(",")]
    searchers, schedulers = args.searchers.split(","), args.schedulers.split(",")
    if smoke:
        searchers = [s for s in searchers if s != "gp"]  # a Gaussian process fit per proposal: not seconds
    out = Path(args.out) if args.out else None

    def keep(path: Path, part: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        # each table beside --out as it ends: a run of hours keeps its finished tables whatever ends it
        if out is not None:
            for frame, kind in zip(part, ("rows", "curves"), strict=True):
                frame.to_parquet(out.with_name(f"{out.stem}.{path.stem}.{kind}.parquet"))

    failed = None
    try:
        parts = per_table(evidence, paths, args.processes, args.seeds, workers, searchers, schedulers, on_done=keep)
    except TablesFailed as e:
        parts, failed = e.done, e
    if not parts:
        raise failed
    df = pd.concat([rows for rows, _ in parts], ignore_index=True)
    curves = pd.concat([c for _, c in parts], ignore_index=True)
    for (name, n), g in df.groupby(["table", "workers"], sort=False):
        print(f"\n## {name}, {n} workers, {g['trials'].iloc[0]} trials a sweep, {args.seeds} seeds; target {g['target'].iloc[0]:.4g}\n")
        print(markdown(g.drop(columns=["table", "workers", "trials", "target", "mode"])))
    if TARGET_WORKERS in workers:
        print(f"\n## At {TARGET_WORKERS} workers: ratio <= {TARGET_RATIO} with a median final best no worse than {BASELINE}'s\n")
        print("\n".join(f"- {line}" for line in verdict(df)))
    if out is not None:
        df.to_parquet(out)
        if not curves.empty:
            plot(curves, out.with_suffix(".png"))
    if failed is not None:
        raise failed  # after the finished tables are printed and written: the record says which failed
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("evidence", main, default_out="evidence.parquet"))
