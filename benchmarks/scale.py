"""The scale figure: time to within 0.5% of a table's best against workers, in units of R, from 1 to 512 workers.

    python benchmarks/scale.py [TABLE ...] [--seeds 20] [--workers 1,2,8,32,128,512] [--processes 2] [--out scale.parquet]
    python benchmarks/scale.py smoke          # one table, 1 seed, 1 and 8 workers (seconds; CI runs it)

Each table (default: every ``benchmarks/tables/*.parquet``) is simulated with random search
without early stopping, random search with ASHA, and TPE with ASHA. R is one full trial's time
(the table's median). A sweep at W workers has max(the table's trials, 2 x W) trials, so that
every size has configurations to spare; those beyond the table take the nearest tabulated
configuration's curve. It prints, per table, method and size, the median and 10-90% band of the
time to near-best in R, the share of seeds that got there, and the utilisation; then whether the
ASHA paper's claim (a near-best configuration within 2R at several hundred workers) holds on our
curves, and at which sizes it breaks. The figure is written beside ``--out`` as PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script; imported as benchmarks.scale, the caller's sys.path already serves
    sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, per_table, run_recorded, tables_of, tables_parser  # noqa: E402
from distsearch.results.simulation import full_trial_s, run_simulations  # noqa: E402
from distsearch.simulate import table as tables  # noqa: E402

WORKERS = (1, 2, 8, 32, 128, 512)
METHODS = {"random (fifo)": ("random", "fifo"), "random+asha": ("random", "asha"), "tpe+asha": ("tpe", "asha")}
CLAIM_R = 2.0
TIME = "time to near best (R), median"


def trials_at(table: tables.Table):
    """Trials per sweep at W workers: the table's own, or 2 x W where that is more."""
    own = int(table.job["budget"]["num_trials"])
    return lambda workers: max(own, 2 * workers)


def scale(path: Path, seeds: int, workers=WORKERS) -> tuple[str, pd.DataFrame]:
    """One table's heading and rows: per method and worker count, time to near-best in R and utilisation."""
    table = tables.load(str(path))
    r = full_trial_s(table)
    rows = []
    for label, (search, scheduler) in METHODS.items():
        _, info = run_simulations(table, list(workers), seeds, search=search, scheduler=scheduler, trials=trials_at(table))
        for s in info["sizes"]:
            t = s["time_to_near_best_R"] or {}
            rows.append(
                {
                    "table": path.stem,
                    "method": label,
                    "workers": s["workers"],
                    "trials": s["trials"],
                    "reached": s["reached_near_best"],
                    TIME: t.get("median", float("nan")),
                    "10%": t.get("p10", float("nan")),
                    "90%": t.get("p90", float("nan")),
                    "utilisation": s["utilisation"]["median"],
                }
            )
    loo = info["surrogate"]["leave_one_out"]
    head = f"## {path.stem}: {tables.describe(table)}; R = {r:.2f} s; {seeds} seeds"
    if loo:
        head += (
            f"\nsurrogate leave-one-out error of the best metric: mean {loo['mean_abs_error']:.4g}, median {loo['median_abs_error']:.4g}; "
            f"same half of the table {loo['same_half']:.0%}"
        )
    return head, pd.DataFrame(rows)


def verdict(df: pd.DataFrame) -> list[str]:
    """Whether random+ASHA reaches near-best within 2R, per table, at the largest size and where it breaks."""
    lines = []
    for name, g in df[df["method"] == "random+asha"].groupby("table", sort=False):
        within = g[(g[TIME] <= CLAIM_R) & (g["reached"] >= 0.5)]
        top = g[g["workers"] == g["workers"].max()].iloc[0]
        holds = bool(top[TIME] <= CLAIM_R and top["reached"] >= 0.5)
        sizes = f"{', '.join(str(w) for w in within['workers'])} workers" if len(within) else "no worker count"
        lines.append(
            f"{name}: at {top['workers']} workers random+ASHA needs {top[TIME]:.2f} R (median; {top['reached']:.0%} of seeds reach it): "
            f"the 2R claim {'holds' if holds else 'does not hold'}; within 2R at: {sizes}"
        )
    return lines


def plot(df: pd.DataFrame, path: Path):
    """Per table, time to near-best (R) above utilisation, against workers on a log scale."""
    from matplotlib import ticker
    from matplotlib.figure import Figure

    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    names = list(dict.fromkeys(df["table"]))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.6 * cols, 5.4 * rows), layout="constrained")
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2, 1] * rows)
    for i, name in enumerate(names):
        top = fig.add_subplot(grid[2 * (i // cols), i % cols])
        low = fig.add_subplot(grid[2 * (i // cols) + 1, i % cols], sharex=top)
        for method, g in df[df["table"] == name].groupby("method", sort=False):
            (line,) = top.plot(g["workers"], g[TIME], marker="o", label=method)
            top.fill_between(g["workers"], g["10%"], g["90%"], alpha=0.15, color=line.get_color())
            low.plot(g["workers"], g["utilisation"], marker=".", color=line.get_color())
        top.axhline(CLAIM_R, color="grey", linestyle="--", linewidth=1, label="2R (the ASHA paper's claim)")
        top.set_xscale("log", base=2)
        top.set_yscale("log")
        top.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        for axis in (top.yaxis, low.xaxis):  # plain numbers: log axes would print 10^k and 2^k as mathtext
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(ticker.NullFormatter())
        low.set_xticks(sorted(set(df["workers"])))
        top.tick_params(labelbottom=False)
        top.set_title(name)
        top.set_ylabel("time to within 0.5% of best (R)")
        low.set_ylabel("utilisation")
        low.set_ylim(0, 1.05)
        low.set_xlabel("workers")
        if i == 0:
            top.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")
    return fig


def main() -> int:
    args = tables_parser(__doc__, 20, WORKERS, "Parquet of every row; the figure goes beside it as PNG").parse_args()
    print(machine_line())
    paths, smoke = tables_of(args)
    if not paths:
        print("no tables: build them with python benchmarks/simulate.py table JOB")
        return 1
    if smoke:
        paths, args.seeds, args.workers = paths[:1], 1, "1,8"
    workers = [int(w) for w in args.workers.split(",")]
    parts = per_table(scale, paths, args.processes, args.seeds, workers)
    for head, part in parts:
        print(f"\n{head}")
        print(markdown(part.drop(columns="table")))
    df = pd.concat([part for _, part in parts], ignore_index=True)
    print("\n## The ASHA paper's 2R claim, on our curves\n")
    print("\n".join(f"- {line}" for line in verdict(df)))
    if args.out:
        df.to_parquet(args.out)
        plot(df, Path(args.out).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("scale", main, default_out="scale.parquet"))
