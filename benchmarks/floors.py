"""Quality floors of the shipped jobs on the test split, each run as a user runs it.

For each job: ``distsearch run jobs/<job>.yaml`` in a fresh process (embedded Ray, this machine's
CPUs), timed end to end, then the held-out test score from its best.json against the floor. For
diabetes, scikit-learn's RidgeCV is fitted on the same training split and scored on the same test
split, side by side, and is the floor.

    python benchmarks/floors.py                 # all four jobs, one after another
    python benchmarks/floors.py wine diabetes   # some of them

Prints one line per job and a table at the end; ``--out FILE`` also writes the figures as JSON.
A job passes when its test score meets the floor and its wall time is at most 15 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line  # noqa: E402

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
        cwd=ROOT, capture_output=True, text=True,
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        return {"job": job, "ok": False, "wall_s": wall, "error": proc.stderr[-2000:]}
    best = json.loads(Path(storage, job, job, "best.json").read_text())
    run = json.loads(Path(storage, job, job, "run.json").read_text())
    value = best["test"][metric]
    met = value >= floor if mode == "max" else value <= floor
    return {
        "job": job, "metric": metric, "test": value, "floor": floor, "met_floor": met, "wall_s": wall,
        "within_limit": wall <= LIMIT_S, "ok": met and wall <= LIMIT_S, "sweep_s": run.get("sweep_wall_seconds"),
        "status_counts": run.get("status_counts"), "best_params": best["params"], "val": best["val_metric"],
        "final_train": best.get("final_train"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs", nargs="*", help=f"jobs to run (default: all of {', '.join(FLOORS)})")
    ap.add_argument("--out", help="also write the figures to this JSON file")
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
    print(f"\n{'job':<11} {'metric':<14} {'test':>8} {'floor':>8} {'wall s':>7}  result")
    for r in rows:
        if "test" not in r:
            print(f"{r['job']:<11} {'-':<14} {'-':>8} {'-':>8} {r['wall_s']:>7.0f}  FAILED TO RUN")
            continue
        print(f"{r['job']:<11} {r['metric']:<14} {r['test']:>8.4f} {r['floor']:>8.4f} {r['wall_s']:>7.0f}  {'pass' if r['ok'] else 'FAIL'}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2, default=str))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
