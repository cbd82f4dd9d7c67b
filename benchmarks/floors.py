"""Quality floors of the shipped jobs on the test split, single best and ensemble, each run as a user runs it.

For each job and seed: ``distsearch run`` of ``jobs/<job>.yaml`` with that seed (which fixes the
splits, the search and the weights) in a fresh process (embedded Ray, this machine's CPUs), timed
end to end; then the held-out test scores of the single best (best.json) and of the ensemble
(ensemble.json), each against its floor, and the ensemble step's share of the command's time.
For diabetes, scikit-learn's RidgeCV is fitted on the same training split and scored on the same
test split, and is both floors. charlm's, text's and images' ensemble floor is the single best's own
score. The text and images jobs' data is built first by their scripts in jobs/data/ where it is
missing; for text, the seconds the driver spent tokenising (its log line) sit beside the sweep's.

    python benchmarks/floors.py                       # all six jobs, seeds 0, 1 and 2
    python benchmarks/floors.py wine diabetes --seeds 1
    python benchmarks/floors.py smoke                 # wine and diabetes, 1 seed, 2 trials of 2 epochs, no record

Prints one JSON line per run as it ends and markdown tables at the end, and writes the figures to
Parquet (``--out``). A run passes when both scores meet their floors and its wall time is at
most 15 minutes; the exit status is 0 when every run passes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_recorded  # noqa: E402

LIMIT_S = 15 * 60
# job -> (test metric, single best's floor, ensemble's floor, "min" or "max"); None: computed
# (diabetes: RidgeCV's score on the same split; charlm's ensemble: the single best's score).
FLOORS = {
    "quickstart": ("test_accuracy", 0.97, 0.99, "max"),
    "wine": ("test_accuracy", 0.95, 0.97, "max"),
    "diabetes": ("test_r2", None, None, "max"),
    "charlm": ("test_bpc", 2.5, None, "min"),
    "text": ("test_accuracy", 0.65, None, "max"),
    "images": ("test_accuracy", 0.95, None, "max"),
}
# job -> (the data script in jobs/data/, what it writes there): built once when missing
DATA = {"text": ("build_text.py", "stdlib_docs.parquet"), "images": ("export_images.py", "digits_images")}
#: ``smoke``'s jobs and the sections' fields it sets: a classification and a regression (RidgeCV's
#: floor) job, as small as they go.
SMOKE_JOBS = ["wine", "diabetes"]
SMOKE_FIELDS = {"budget": {"num_trials": 2, "max_epochs": 2}, "asha": {"grace_period_epochs": 1}}
TOKENISED = re.compile(r"text: \d+ texts tokenised by \d+ tokenizer\(s\) in ([0-9.]+) s")


def build_data(job: str) -> None:
    script, output = DATA.get(job, (None, None))
    if script and not (ROOT / "jobs" / "data" / output).exists():
        subprocess.run([sys.executable, str(ROOT / "jobs" / "data" / script)], cwd=ROOT, check=True, capture_output=True)


def ridge_floor(job_file: Path, seed: int) -> float:
    """RidgeCV's test R² on the job's own train/test split (that seed, the same standardisation)."""
    import numpy as np
    from sklearn.linear_model import RidgeCV

    from distsearch.spec.model import load_job
    from distsearch.validate import check_job

    spec = load_job(job_file)
    splits = check_job(spec).splits(seed)
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 25)).fit(splits.train[0].numpy(), splits.train[1].numpy())
    return float(ridge.score(splits.test[0].numpy(), splits.test[1].numpy()))


def seeded_job(job: str, seed: int, fields: dict | None = None) -> dict:
    """``jobs/<job>.yaml`` with ``seed``, and ``fields`` (section -> its fields) over its own."""
    raw = yaml.safe_load((ROOT / "jobs" / f"{job}.yaml").read_text())
    raw["seed"] = seed
    for section, values in (fields or {}).items():
        raw[section] = {**(raw.get(section) or {}), **values}
    return raw


def run_one(job: str, seed: int, storage: str, fields: dict | None = None) -> dict:
    job_file = ROOT / "jobs" / f"{job}.yaml"
    metric, floor, ensemble_floor, mode = FLOORS[job]
    if floor is None:
        floor = ensemble_floor = ridge_floor(job_file, seed)
    raw = seeded_job(job, seed, fields)
    seeded = Path(storage, f"{job}-{seed}.yaml")
    seeded.write_text(yaml.safe_dump(raw, sort_keys=False))  # the job's own key order: Tune draws in it
    run_id = f"seed{seed}"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "distsearch", "run", str(seeded), "--storage", storage, "--run-id", run_id, "--new-run", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        return {"job": job, "seed": seed, "ok": False, "wall_s": wall, "error": proc.stderr[-2000:]}
    run_dir = Path(storage, raw["name"], run_id)
    best = json.loads((run_dir / "best.json").read_text())
    ensemble = json.loads((run_dir / "ensemble.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    value, ens = best["test"][metric], ensemble["test"][metric]
    if ensemble_floor is None:
        ensemble_floor = value
    better = (lambda v, f: v >= f) if mode == "max" else (lambda v, f: v <= f)
    met, ens_met = better(value, floor), better(ens, ensemble_floor)
    return {
        "job": job,
        "seed": seed,
        "metric": metric,
        "test": value,
        "floor": floor,
        "ensemble_test": ens,
        "ensemble_floor": ensemble_floor,
        "members": len(ensemble["members"]),
        "met_floor": met,
        "ensemble_met_floor": ens_met,
        "wall_s": wall,
        "ensemble_s": ensemble["ensemble_seconds"],
        "ensemble_share": ensemble["ensemble_seconds"] / (wall - ensemble["ensemble_seconds"]),
        "within_limit": wall <= LIMIT_S,
        "ok": met and ens_met and wall <= LIMIT_S,
        "sweep_s": run.get("sweep_wall_seconds"),
        "status_counts": run.get("status_counts"),
        "best_params": best["params"],
        "tokenise_s": float(m.group(1)) if (m := TOKENISED.search(proc.stderr)) else None,
        "val": best["val_metric"],
        "ensemble_val": ensemble["val"][metric.replace("test_", "val_")],
    }


def write_figures(rows: list[dict], out: str) -> str:
    """Write the runs' figures to Parquet at ``out`` and return the markdown tables of results."""
    four = lambda v: f"{v:.4f}"  # noqa: E731 - four digits: a floor can hinge on one test example
    table = pd.DataFrame(
        [
            {
                "job": r["job"],
                "seed": r["seed"],
                "metric": r.get("metric", "-"),
                **{k: four(r[k]) if k in r else "-" for k in ("test", "floor", "ensemble_test", "ensemble_floor")},
                "members": r.get("members", "-"),
                "wall_s": r["wall_s"],
                "ensemble share of the time": r.get("ensemble_share", float("nan")),
                "tokenise_s / sweep_s": r["tokenise_s"] / r["sweep_s"] if r.get("tokenise_s") and r.get("sweep_s") else "-",
                "result": ("pass" if r["ok"] else "FAIL") if "test" in r else "FAILED TO RUN",
            }
            for r in rows
        ]
    )
    # dict-valued figures as JSON text, so that every column has one Parquet type
    pd.DataFrame([{k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()} for r in rows]).to_parquet(out, index=False)
    ran = pd.DataFrame([r for r in rows if "test" in r])
    summary = ""
    if not ran.empty:
        by_job = ran.groupby("job", sort=False).agg(
            runs=("seed", "size"), single_median=("test", "median"), ensemble_median=("ensemble_test", "median"),
            single_met=("met_floor", "sum"), ensemble_met=("ensemble_met_floor", "sum"), ensemble_share_max=("ensemble_share", "max"),
        )  # fmt: skip
        summary = "\n\nPer job, over the seeds (medians; runs meeting each floor):\n\n" + markdown(by_job.reset_index())
    return markdown(table) + summary


def job_args(doc: str, default_jobs: list[str], out: str) -> argparse.Namespace:
    """The command line of a benchmark over shipped jobs and seeds: ``jobs`` (checked against
    ``FLOORS``; ``default_jobs`` when none), ``--seeds`` and ``--out``; ``smoke`` alone for
    ``SMOKE_JOBS``, 1 seed, ``SMOKE_FIELDS`` (``args.fields``) and a scratch ``--out``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(
        "jobs", nargs="*", help=f"jobs to run (default: {', '.join(default_jobs)}; any of {', '.join(FLOORS)}); smoke: the smallest run, no record"
    )
    ap.add_argument("--seeds", type=int, default=3, help="seeds per job, 0 to N-1 (default 3)")
    ap.add_argument("--out", default=out)
    args = ap.parse_args()
    args.smoke, args.fields = args.jobs == ["smoke"], None
    if args.smoke:
        args.jobs, args.seeds, args.fields = list(SMOKE_JOBS), 1, SMOKE_FIELDS
        args.out = str(Path(tempfile.gettempdir(), f"{Path(out).stem}-smoke.parquet"))
    unknown = [j for j in args.jobs if j not in FLOORS]
    if unknown:
        ap.error(f"unknown job(s) {', '.join(unknown)}; use {', '.join(FLOORS)}")
    args.jobs = args.jobs or list(default_jobs)
    return args


def each_run(args: argparse.Namespace):
    """(job, seed, a storage folder of this benchmark's own) for each run ``job_args`` asks for,
    the job's data built first where it is missing; the folder is removed at the end."""
    with tempfile.TemporaryDirectory() as storage:
        for job in args.jobs:
            build_data(job)
            for seed in range(args.seeds):
                yield job, seed, storage


def main() -> int:
    args = job_args(__doc__, list(FLOORS), "floors.parquet")
    print(machine_line(), flush=True)
    rows = []
    for job, seed, storage in each_run(args):
        rows.append(run_one(job, seed, storage, args.fields))
        print(json.dumps(rows[-1], default=str), flush=True)
    print("\n" + write_figures(rows, args.out))
    print(f"\nfigures: {args.out}")
    if args.smoke:  # a smoke run's budget is too small for any floor: that every run ran is the point
        return 0 if all("test" in r for r in rows) else 1
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(run_recorded("floors", main, "floors.parquet"))
