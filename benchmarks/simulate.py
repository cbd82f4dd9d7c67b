"""The simulator: recorded runs and tables, its fidelity to real runs, its speed, and the scale figure.

    python benchmarks/simulate.py record [--trials 16]     # three quickstart runs -> benchmarks/tables/recorded/
    python benchmarks/simulate.py table JOB [--configs 128] # a complete FIFO table -> benchmarks/tables/<job>.parquet
    python benchmarks/simulate.py fidelity                  # replay the recorded runs at their concurrency and seed
    python benchmarks/simulate.py speed [--seeds 100]       # a 48-trial sweep; seeds x 4 methods x every table
    python benchmarks/simulate.py scale [TABLE] [--seeds 20] # time to within 0.5% of the best against workers, in R
    python benchmarks/simulate.py smoke                     # every step at its smallest, in seconds (CI runs it)

``record`` and ``table`` run real sweeps through the CLI (minutes); the others only simulate.
Each step prints markdown; ``fidelity``, ``speed`` and ``scale`` keep a record in results/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_cli, run_recorded  # noqa: E402
from distsearch import constants as C  # noqa: E402
from distsearch.simulate import table as tables  # noqa: E402
from distsearch.simulate.loop import job_for, simulate  # noqa: E402
from distsearch.simulate.surrogate import Nearest  # noqa: E402

TABLES = ROOT / "benchmarks" / "tables"
RECORDED = TABLES / "recorded"
#: The three replayed runs: the quickstart's job with each searcher and scheduler.
RECORDINGS = {"quickstart-random-asha": ("random", True), "quickstart-tpe-asha": ("tpe", True), "quickstart-random-fifo": ("random", False)}
METHODS = {"random (fifo)": ("random", "fifo"), "random+asha": ("random", "asha"), "tpe+asha": ("tpe", "asha"), "tpe (fifo)": ("tpe", "fifo")}
RUN_FILES = (C.RUN_FILE, C.TRIALS_FILE, C.EPOCHS_FILE)


def record(trials: int, epochs: int, names=RECORDINGS) -> None:
    """Run the quickstart job with each searcher and scheduler, and keep its run files."""
    base = yaml.safe_load((ROOT / "jobs" / "quickstart.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            algorithm, asha = RECORDINGS[name]
            raw = {**base, "name": name.replace("-", "_"), "storage": str(Path(tmp, "runs")), "budget": {"num_trials": trials, "max_epochs": epochs}}
            raw["search"] = {"algorithm": algorithm}
            raw["asha"] = {**base["asha"], "enabled": asha}
            raw["ensemble"] = {"enabled": False}
            run, wall = run_cli(raw, Path(tmp), name)
            out = RECORDED / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            src = Path(raw["storage"], raw["name"], name)
            for f in RUN_FILES:
                shutil.copyfile(src / f, out / f)
            print(f"recorded {name}: {len(run['trials'])} trials, {len(run['epochs'])} epochs, command {wall:.1f} s -> {out.relative_to(ROOT)}")


def build_table(job: str, configs: int) -> None:
    """A complete table of ``job``: ``configs`` random configurations, each trained to max_epochs (FIFO)."""
    raw = yaml.safe_load(Path(job).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        raw = {**raw, "storage": str(Path(tmp, "runs")), "search": {"algorithm": "random"}, "asha": {**raw.get("asha", {}), "enabled": False}}
        raw["budget"] = {**raw["budget"], "num_trials": configs}
        raw["ensemble"] = {"enabled": False}
        name = f"table-{raw['name']}"
        run, wall = run_cli(raw, Path(tmp), name)
        table = tables.from_run(str(Path(raw["storage"], raw["name"], name)))
        table.source = {"command": f"python benchmarks/simulate.py table {job} --configs {configs}", "machine": machine_line(), "command_s": wall}
        out = TABLES / f"{raw['name']}.parquet"
        tables.save(table, str(out))
        print(f"{out.relative_to(ROOT)}: {tables.describe(table)}; {out.stat().st_size / 1e6:.2f} MB; built in {wall:.0f} s")


def fidelity() -> pd.DataFrame:
    """Each recorded run replayed at its own concurrency and seed, beside the run."""
    from distsearch.results.files import read_run

    rows = []
    for run_dir in sorted(RECORDED.iterdir()):
        table = tables.from_run(str(run_dir))
        real = read_run(run_dir)
        t0 = time.perf_counter()
        sim = simulate(table, job_for(table), table.concurrency)
        took = time.perf_counter() - t0
        trials = real["trials"]
        wall = (trials[C.ENDED_AT].max() - trials[C.STARTED_AT].min()).total_seconds()
        stopped = {t.rsplit("_", 1)[-1]: e for t, e in zip(trials[C.TRIAL_ID], trials[C.EPOCHS_COMPLETED], strict=True) if e < table.max_epochs}
        sim_stopped = {t.rsplit("_", 1)[-1]: e for t, e in sim.stopped.items()}
        rows.append(
            {
                "run": run_dir.name,
                "workers": table.concurrency,
                "real wall (s)": wall,
                "simulated wall (s)": sim.wall_s,
                "wall error": sim.wall_s / wall - 1,
                "real worker-epochs": len(real["epochs"]),
                "simulated worker-epochs": sim.worker_epochs,
                "epochs error": sim.worker_epochs / len(real["epochs"]) - 1,
                "same stops": stopped == sim_stopped if "random-asha" in run_dir.name else "-",
                "surrogate share": sim.surrogate_results / sim.worker_epochs,
                "simulation (s)": took,
            }
        )
    df = pd.DataFrame(rows)
    print(markdown(df))
    return df


def speed(seeds: int, sweep_trials: int = 48) -> pd.DataFrame:
    """Seconds to simulate one ``sweep_trials``-trial sweep, and ``seeds`` x 4 methods x every table."""
    paths = sorted(TABLES.glob("*.parquet"))
    rows = []
    for path in paths:
        table = tables.load(str(path))
        sur = Nearest(table)
        job = job_for(table)
        table.job = {**table.job, "budget": {**table.job["budget"], "num_trials": sweep_trials}}
        t0 = time.perf_counter()
        simulate(table, job_for(table, search="random"), 8, sur)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        for search, scheduler in METHODS.values():
            for k in range(seeds):
                simulate(table, job_for(table, seed=job.seed + k, search=search, scheduler=scheduler), 8, sur)
        rows.append({"table": path.stem, f"one {sweep_trials}-trial sweep (s)": one, f"{seeds} seeds x 4 methods (s)": time.perf_counter() - t0})
    df = pd.DataFrame(rows)
    if len(df):
        print(markdown(df))
        print(f"all tables: {df.iloc[:, 2].sum():.1f} s for {seeds} seeds x 4 methods x {len(df)} tables")
    return df


def scale(path: Path, seeds: int, workers=(1, 2, 8, 32, 128, 512), figure: Path | None = None) -> pd.DataFrame:
    """Time to within 0.5% of the table's best (in R, one full trial's time) against workers."""
    from distsearch.results.simulation import full_trial_s, run_simulations

    table = tables.load(str(path))
    r = full_trial_s(table)
    rows = []
    for label, (search, scheduler) in list(METHODS.items())[:3]:
        _, info = run_simulations(table, list(workers), seeds, search=search, scheduler=scheduler)
        for s in info["sizes"]:
            t = s["time_to_near_best_R"]
            rows.append(
                {
                    "method": label,
                    "workers": s["workers"],
                    "reached": s["reached_near_best"],
                    "time to near best (R), median": t["median"] if t else float("nan"),
                    "10%": t["p10"] if t else float("nan"),
                    "90%": t["p90"] if t else float("nan"),
                    "utilisation": s["utilisation"]["median"],
                }
            )
    df = pd.DataFrame(rows)
    print(f"table {path.name}: {tables.describe(table)}; R = {r:.2f} s; {seeds} seeds")
    print(markdown(df))
    if figure:
        _plot(df, figure, path.stem)
    return df


def _plot(df: pd.DataFrame, path: Path, name: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for method, g in df.groupby("method", sort=False):
        ax.plot(g["workers"], g["time to near best (R), median"], marker="o", label=method)
        ax.fill_between(g["workers"], g["10%"], g["90%"], alpha=0.15)
    ax.axhline(2.0, color="grey", linestyle="--", linewidth=1, label="2R (the ASHA paper's claim)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("workers")
    ax.set_ylabel("time to within 0.5% of the best (R)")
    ax.set_title(f"{name}: simulated from its table")
    ax.legend()
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["record", "table", "fidelity", "speed", "scale", "smoke"])
    p.add_argument("path", nargs="?", help="table: the job file; scale: the table (default: the first under benchmarks/tables)")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--configs", type=int, default=128)
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--out", help="Parquet of the step's table")
    args = p.parse_args()
    print(machine_line())
    df = None
    if args.step == "record":
        record(args.trials, args.epochs)
    elif args.step == "table":
        build_table(args.path, args.configs)
    elif args.step == "fidelity":
        df = fidelity()
    elif args.step == "speed":
        df = speed(args.seeds)
    elif args.step == "scale":
        path = Path(args.path) if args.path else sorted(TABLES.glob("*.parquet"))[0]
        df = scale(path, min(args.seeds, 100), figure=Path(args.out).with_suffix(".png") if args.out else None)
    else:  # smoke: each simulated step at its smallest
        fidelity()
        speed(seeds=1, sweep_trials=8)
        tabs = sorted(TABLES.glob("*.parquet"))
        if tabs:
            scale(tabs[0], seeds=1, workers=(1, 8))
    if df is not None and args.out:
        df.to_parquet(args.out)
    return 0


if __name__ == "__main__":
    if "smoke" in sys.argv[1:2] or sys.argv[1:2] in (["record"], ["table"]):
        sys.exit(main())
    sys.exit(run_recorded("simulate", main, default_out="simulate.parquet"))
