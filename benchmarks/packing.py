"""Packing: 8 single-worker trials at 0.5 against 1 CPU per trial, and at 1 CPU one at a time.

The same 8 trials (digits, fixed MLP recipe, 6 epochs each, FIFO) run three times through the
CLI on this machine's CPUs: reserving 1 CPU per trial, then 0.5, so twice as many trials share
the cores, then 1 CPU with one trial at a time (``max_concurrent_trials: 1``), which leaves a
CPU free, so each next trial's worker starts in a spare process (see distsearch.train.spares).
Reported: sweep throughput (trials and epochs per minute), the ratio to the first row, the
median per-epoch time (how much each trial slows down when packed), and the CPU seconds the
whole machine spent during each command.

    python benchmarks/packing.py [--out packing.parquet]
    python benchmarks/packing.py smoke     # every row with 2 trials of 1 epoch, no record

About 3 minutes on 2 cores; 4.7 on the VM about 3 times slower per core of 2026-12-02.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_cli, run_recorded  # noqa: E402
from distsearch import constants as C  # noqa: E402

TRIALS, EPOCHS = 8, 6


def run(cpus: float, workdir: Path, max_concurrent: int | None = None, trials: int = TRIALS, epochs: int = EPOCHS) -> dict:
    raw = {
        "name": f"packing_{str(cpus).replace('.', '_')}" + (f"_x{max_concurrent}" if max_concurrent else ""),
        "task": "digits",
        "seed": 0,
        "metric": "val_accuracy",
        "mode": "max",
        "space": {
            "model": {"choice": {"mlp": {"depth": 2, "width": 256}}},
            "lr": {"loguniform": [1.0e-3, 1.0e-2]},
            "optimizer": "adam",
            "batch_size": 16,
        },
        "budget": {"num_trials": trials, "max_epochs": epochs},
        "asha": {"enabled": False},
        "scaling": {"num_workers": 1, "cpus_per_worker": cpus},
        "storage": str(workdir / "runs"),
        **({"max_concurrent_trials": max_concurrent} if max_concurrent else {}),
    }
    r, _ = run_cli(raw, workdir, "r")
    sweep = r["run"]["sweep_wall_seconds"]
    epochs = r["epochs"]
    return {
        "cpus_per_trial": cpus,
        "trials_at_once": r["run"]["max_concurrent_trials"],
        "sweep_s": sweep,
        "trials_per_min": 60 * len(r["trials"]) / sweep,
        "epochs_per_min": 60 * len(epochs) / sweep,
        "epoch_s_median": float(epochs[C.EPOCH_SECONDS].median()),
        "trial_wall_s_median": float(r["trials"][C.WALL_SECONDS].median()),
        "completed": int((r["trials"][C.STATUS] == C.STATUS_COMPLETED).sum()),
        "machine_cpu_s": r["machine_cpu_seconds"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", choices=["smoke"], help="smoke: every row with 2 trials of 1 epoch (a CLI run each), no record")
    ap.add_argument("--out", default="packing.parquet")
    args = ap.parse_args()
    size = {"trials": TRIALS, "epochs": EPOCHS}
    if args.mode == "smoke":
        size, args.out = {"trials": 2, "epochs": 1}, str(Path(tempfile.gettempdir(), "packing-smoke.parquet"))
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as d:
        rows = [run(1.0, Path(d), **size), run(0.5, Path(d), **size), run(1.0, Path(d), max_concurrent=1, **size)]
    df = pd.DataFrame(rows)
    df["throughput_vs_1cpu"] = df["trials_per_min"] / df["trials_per_min"].iloc[0]
    df["epoch_time_vs_1cpu"] = df["epoch_s_median"] / df["epoch_s_median"].iloc[0]
    df.to_parquet(args.out, index=False)
    print(markdown(df))
    print(f"\nfigures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("packing", main, "packing.parquet"))
