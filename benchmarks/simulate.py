"""The simulator: recorded runs and tables, its fidelity to real runs, and its speed (the scale figure: scale.py).

    python benchmarks/simulate.py record [--trials 16]     # three quickstart runs -> benchmarks/tables/recorded/
    python benchmarks/simulate.py table JOB [--configs 128] # a complete FIFO table -> benchmarks/tables/<job>.parquet (resumable)
    python benchmarks/simulate.py fidelity                  # replay the recorded runs at their concurrency and seed
    python benchmarks/simulate.py speed [--seeds 100]       # a 48-trial sweep; seeds x 4 methods x every table
    python benchmarks/simulate.py smoke                     # every step at its smallest, in seconds (CI runs it)

``record`` and ``table`` run real sweeps through the CLI (minutes); the others only simulate.
Each step prints markdown; ``fidelity`` and ``speed`` keep a record in results/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import TABLES, machine_line, markdown, run_cli, run_recorded  # noqa: E402
from distsearch import constants as C  # noqa: E402
from distsearch.simulate import table as tables  # noqa: E402
from distsearch.simulate.loop import job_for, simulate  # noqa: E402
from distsearch.simulate.surrogate import Nearest  # noqa: E402

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
    """A complete table of ``job``: ``configs`` random configurations, each trained to max_epochs (FIFO).

    The sweep runs in ``runs/tables/`` (ignored by git) under a fixed run id, so a build that is
    interrupted (Ctrl-C, a lost session) goes on from its ledger and checkpoints when the same
    command runs again."""
    raw = yaml.safe_load(Path(job).read_text())
    storage = ROOT / "runs" / "tables"
    storage.mkdir(parents=True, exist_ok=True)
    raw = {**raw, "storage": str(storage), "search": {"algorithm": "random"}, "asha": {**raw.get("asha", {}), "enabled": False}}
    raw["budget"] = {**raw["budget"], "num_trials": configs}
    raw["ensemble"] = {"enabled": False}
    name = f"table-{raw['name']}-{configs}"
    run_dir = Path(raw["storage"], raw["name"], name)
    done = (run_dir / C.RUN_FILE).exists() and json.loads((run_dir / C.RUN_FILE).read_text()).get("finished_at")
    wall = 0.0 if done else run_cli(raw, storage, name, new_run=False)[1]  # a finished sweep is only tabulated again
    table = tables.from_run(str(run_dir))
    table.source = {"command": f"python benchmarks/simulate.py table {job} --configs {configs}", "machine": machine_line(), "command_s": wall}
    out = TABLES / f"{raw['name']}.parquet"
    tables.save(table, str(out))
    print(f"{out.relative_to(ROOT)}: {tables.describe(table)}; {out.stat().st_size / 1e6:.2f} MB; built in {wall:.0f} s (this command)")


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["record", "table", "fidelity", "speed", "smoke"])
    p.add_argument("path", nargs="?", help="table: the job file")
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
    else:  # smoke: each simulated step at its smallest
        fidelity()
        speed(seeds=1, sweep_trials=8)
    if df is not None and args.out:
        df.to_parquet(args.out)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] in (["record"], ["table"]):
        sys.exit(main())
    sys.exit(run_recorded("simulate", main, default_out="simulate.parquet"))
