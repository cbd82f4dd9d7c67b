"""Selection options side by side: each job's sweep run once, then every option of the job's selection section on it, each scored once on test.

For each job and seed: ``distsearch run`` of ``jobs/<job>.yaml`` with that seed, as floors.py runs it,
but with every checkpoint kept. Then, in this process, each option below picks the single best and
the ensemble with distsearch's own ``evaluate_run`` and scores them once on the test split, against
floors.py's floors. Each option sees only the checkpoints the job's own retention would have kept
under it (``checkpointing.num_to_keep`` of the job, ranked by ``train.checkpoint.keep_rank`` with the
option's smoothing, and the latest), so the options differ in their choices, never in their sweeps.

    python benchmarks/selection.py                         # quickstart, wine, diabetes; seeds 0, 1 and 2
    python benchmarks/selection.py text images --seeds 3
    python benchmarks/selection.py smoke                   # wine and diabetes, 1 seed, 2 trials of 2 epochs, no record

Prints one JSON line per (run, option) and markdown tables: per option, the seeds meeting each floor
and the (job, seed) pairs whose ensemble scores no worse on test than the single best. Figures go to
Parquet (``--out``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_recorded  # noqa: E402
from benchmarks.floors import FLOORS, LIMIT_S, each_run, job_args, ridge_floor, seeded_job  # noqa: E402

# option -> the job's selection section under it; "checkpoint" is the section's defaults
OPTIONS = {
    "checkpoint": {},
    "smooth3": {"smoothing_epochs": 3},
    "epochs3": {"checkpoints_per_trial": 3},
    "smooth3+epochs3": {"smoothing_epochs": 3, "checkpoints_per_trial": 3},
    "refit": {"refit": True},
    "smooth3+epochs3+refit": {"smoothing_epochs": 3, "checkpoints_per_trial": 3, "refit": True},
}
DEFAULT_JOBS = ["quickstart", "wine", "diabetes"]


def retained(epochs: pd.DataFrame, objective, smoothing_epochs: int, num_to_keep: int) -> pd.DataFrame:
    """``epochs`` with the checkpoint path blanked where Ray Train would have deleted it: per trial,
    the ``num_to_keep`` highest ``keep_rank`` scores (the later of equal ones) and the latest."""
    from distsearch import constants as C
    from distsearch.train.checkpoint import keep_rank

    out = epochs.copy()
    for _, rows in out[out[C.CHECKPOINT_PATH].notna()].sort_values(C.EPOCH).groupby(C.TRIAL_ID):
        history = rows.to_dict("records")
        scores = [(keep_rank(objective, history[: i + 1], smoothing_epochs), i) for i in range(len(history))]
        keep = {i for _, i in sorted(scores, reverse=True)[:num_to_keep]} | {len(history) - 1}
        dropped = [idx for i, idx in enumerate(rows.index) if i not in keep]
        out.loc[dropped, C.CHECKPOINT_PATH] = None
    return out


def sweep(job: str, seed: int, storage: str, fields: dict | None = None) -> tuple[Path, float, int]:
    """Run the job with ``seed`` (and ``fields``, section -> its fields, over its own) and every
    checkpoint kept: its run folder, wall seconds, and the job's own num_to_keep."""
    raw = seeded_job(job, seed, fields)
    num_to_keep = int((raw.get("checkpointing") or {}).get("num_to_keep", 2))
    raw["checkpointing"] = {**(raw.get("checkpointing") or {}), "num_to_keep": int(raw["budget"]["max_epochs"]), "keep_after_sweep": "all"}
    seeded = Path(storage, f"{job}-{seed}.yaml")
    seeded.write_text(yaml.safe_dump(raw, sort_keys=False))  # the job's own key order: Tune draws in it
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "distsearch", "run", str(seeded), "--storage", storage, "--run-id", f"seed{seed}", "--new-run", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{job} seed {seed}: distsearch run failed: {proc.stderr[-2000:]}")
    return Path(storage, raw["name"], f"seed{seed}"), time.monotonic() - t0, num_to_keep


def options_on(job: str, seed: int, run_dir: Path, wall_s: float, num_to_keep: int, out: Path) -> list[dict]:
    from distsearch.results.files import read_run
    from distsearch.search.objective import Objective
    from distsearch.select.evaluate import evaluate_run
    from distsearch.spec.model import parse_job
    from distsearch.spec.sections import Selection
    from distsearch.validate import check_job

    metric, floor, ensemble_floor, mode = FLOORS[job]
    if floor is None:
        floor = ensemble_floor = ridge_floor(ROOT / "jobs" / f"{job}.yaml", seed)
    run = read_run(run_dir)
    spec = parse_job(run["run"]["job"])
    task = check_job(spec, dry_run=False)
    splits = task.splits(spec.seed)
    better = (lambda v, f: v >= f) if mode == "max" else (lambda v, f: v <= f)
    rows = []
    for name, section in OPTIONS.items():
        option = spec.model_copy(update={"selection": Selection(**section)})
        epochs = retained(run["epochs"], Objective.of(spec), option.selection.smoothing_epochs, num_to_keep)
        t0 = time.monotonic()
        best, ensemble = evaluate_run(option, task, splits, run["trials"], epochs, str(out / f"{job}-{seed}-{name}"))
        select_s = time.monotonic() - t0
        single, ens = best["test"][metric], ensemble["test"][metric]
        floor_e = single if ensemble_floor is None else ensemble_floor
        rows.append({
            "job": job, "seed": seed, "option": name, "metric": metric, "test": single, "floor": floor, "ensemble_test": ens,
            "ensemble_floor": floor_e, "met_floor": better(single, floor), "ensemble_met_floor": better(ens, floor_e),
            "ensemble_not_worse": better(ens, single), "members": len(ensemble["members"]), "val": best["val_metric"],
            "best_trial": best["trial_id"], "best_epoch": best["epoch"], "sweep_wall_s": wall_s, "select_s": select_s,
            "within_limit": wall_s + select_s <= LIMIT_S,
        })  # fmt: skip
        print(json.dumps(rows[-1], default=str), flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    four = lambda v: f"{v:.4f}"  # noqa: E731 - four digits: a floor can hinge on one test example
    table = frame.assign(test=frame["test"].map(four), ensemble_test=frame["ensemble_test"].map(four), floor=frame["floor"].map(four))
    cols = ["job", "seed", "option", "test", "ensemble_test", "floor", "members", "best_epoch", "select_s"]
    per_job = frame.groupby(["option", "job"], sort=False).agg(
        runs=("seed", "size"), single_met=("met_floor", "sum"), ensemble_met=("ensemble_met_floor", "sum"),
        ensemble_median=("ensemble_test", "median"), single_median=("test", "median"),
    )  # fmt: skip
    per_option = frame.groupby("option", sort=False).agg(
        pairs=("seed", "size"), ensemble_floor_met=("ensemble_met_floor", "sum"), ensemble_not_worse=("ensemble_not_worse", "sum"),
        all_within_limit=("within_limit", "all"), select_s_max=("select_s", "max"),
    )  # fmt: skip
    per_option["not_worse_share"] = per_option["ensemble_not_worse"] / per_option["pairs"]
    return (
        markdown(table[cols])
        + "\n\nPer option and job (seeds meeting each floor; medians):\n\n" + markdown(per_job.reset_index())
        + "\n\nPer option, over every (job, seed) pair:\n\n" + markdown(per_option.reset_index())
    )  # fmt: skip


def main() -> int:
    args = job_args(__doc__, DEFAULT_JOBS, "selection.parquet")
    print(machine_line(), flush=True)
    rows = []
    for job, seed, storage in each_run(args):
        run_dir, wall_s, num_to_keep = sweep(job, seed, storage, args.fields)
        rows += options_on(job, seed, run_dir, wall_s, num_to_keep, Path(storage, "options"))
    pd.DataFrame(rows).to_parquet(args.out, index=False)
    print("\n" + summary(rows) + f"\n\nfigures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("selection", main, "selection.parquet"))
