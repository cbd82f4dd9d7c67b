"""Quality floors of the shipped jobs on the test split, each run as a user runs it.

For each job: ``distsearch run jobs/<job>.yaml`` in a fresh process (embedded Ray, this machine's
CPUs), timed end to end, then the held-out test score from its best.json against the floor. For
diabetes, scikit-learn's RidgeCV is fitted on the same training split and scored on the same test
split, side by side, and is the floor.

    python benchmarks/floors.py                 # all four jobs, one after another
    python benchmarks/floors.py wine diabetes   # some of them

Prints one JSON line per job as it ends and a markdown table at the end, and writes the figures
to Parquet (``--out``; the selected parameters, trial counts and final train metrics as JSON
text columns). A job passes when its test score meets the floor and its wall time is at most
15 minutes; the exit status is 0 when every job passes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_recorded  # noqa: E402

LIMIT_S = 15 * 60
# job -> (test metric in best.json, floor, "min" or "max"); diabetes's floor is computed.
FLOORS = {
    "quickstart": ("test_accuracy", 0.97, "max"),
    "wine": ("test_accuracy", 0.95, "max"),
    "diabetes": ("test_r2", None, "max"),
    "charlm": ("test_bpc", 2.5, "min"),
}


def ridge_floor(job_file: Path) -> float:
    """RidgeCV's test R² on the job's own train/test split (same seed, same standardisation)."""
    import numpy as np
    from sklearn.linear_model import RidgeCV

    from distsearch.spec import load_job
    from distsearch.tasks import check_job

    spec = load_job(job_file)
    splits = check_job(spec).splits(spec.seed)
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 25)).fit(splits.train[0].numpy(), splits.train[1].numpy())
    return float(ridge.score(splits.test[0].numpy(), splits.test[1].numpy()))


def run_one(job: str, storage: str) -> dict:
    job_file = ROOT / "jobs" / f"{job}.yaml"
    metric, floor, mode = FLOORS[job]
    if floor is None:
        floor = ridge_floor(job_file)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "distsearch", "run", str(job_file), "--storage", storage, "--run-id", job, "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        return {"job": job, "ok": False, "wall_s": wall, "error": proc.stderr[-2000:]}
    best = json.loads(Path(storage, job, job, "best.json").read_text())
    run = json.loads(Path(storage, job, job, "run.json").read_text())
    value = best["test"][metric]
    met = value >= floor if mode == "max" else value <= floor
    return {
        "job": job,
        "metric": metric,
        "test": value,
        "floor": floor,
        "met_floor": met,
        "wall_s": wall,
        "within_limit": wall <= LIMIT_S,
        "ok": met and wall <= LIMIT_S,
        "sweep_s": run.get("sweep_wall_seconds"),
        "status_counts": run.get("status_counts"),
        "best_params": best["params"],
        "val": best["val_metric"],
        "final_train": best.get("final_train"),
    }


def write_figures(rows: list[dict], out: str) -> str:
    """Write the jobs' figures to Parquet at ``out`` and return the markdown table of results."""
    table = pd.DataFrame(
        [
            {
                "job": r["job"],
                "metric": r.get("metric", "-"),
                **{k: f"{r[k]:.4f}" if k in r else "-" for k in ("test", "floor")},  # four digits: a floor can hinge on one test example
                "wall_s": r["wall_s"],
                "result": ("pass" if r["ok"] else "FAIL") if "test" in r else "FAILED TO RUN",
            }
            for r in rows
        ]
    )
    # dict-valued figures as JSON text, so that every column has one Parquet type
    pd.DataFrame([{k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()} for r in rows]).to_parquet(out, index=False)
    return markdown(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs", nargs="*", help=f"jobs to run (default: all of {', '.join(FLOORS)})")
    ap.add_argument("--out", default="floors.parquet")
    args = ap.parse_args()
    print(machine_line(), flush=True)
    unknown = [j for j in args.jobs if j not in FLOORS]
    if unknown:
        ap.error(f"unknown job(s) {', '.join(unknown)}; use {', '.join(FLOORS)}")
    args.jobs = args.jobs or list(FLOORS)
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for job in args.jobs:
            row = run_one(job, storage)
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)
    print("\n" + write_figures(rows, args.out))
    print(f"\nfigures: {args.out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(run_recorded("floors", main, "floors.parquet"))
