"""Per-trial start in a sweep: what each further trial pays before its first epoch, by harness setting.

One sweep of ``--trials`` trials of 2 epochs, one trial at a time, 1 Train worker of 1 CPU (the
recipe of ``overhead.py``), six ways:

- the trial trained in its reused Tune actor, no Train worker (``trial_actor``, what ``auto``
  picks for one worker): later trials run in the first trial's actor;
- the controller in the trial, trial actor reuse, kept worker groups and spare worker processes
  for the first trial (the default for DDP): later trials run in the first trial's processes;
- the same without kept worker groups, so with a spare for every trial (1 worker on 2 CPUs
  leaves a CPU free, so the later trials' spares are on): the defaults before kept groups;
- the same without spares;
- without spares and without reuse;
- Ray's own path: the controller as its own actor, no reuse, no spares.

For each: start to first epoch of the first trial and of the later ones (median, min, max), the gap
from one trial's end to the next one's start (Tune ends the old trial actor and starts a new one,
or resets a reused one), and the sweep's wall time, first start to last end. The first trial also
pays what a fresh cluster starts once (Ray Train's autoscaling coordinator, pooled processes); the
later ones show what every further trial of a sweep pays.

    python benchmarks/starts.py [--trials 4] [--out starts.parquet]
    python benchmarks/starts.py smoke     # every row with 2 trials of 1 epoch, no record

About 4 minutes on 2 cores (AMD EPYC with AVX-512, 2026-12-02, all five rows; 4.5 on the Intel
Xeon VM before the kept-groups row).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_recorded  # noqa: E402
from benchmarks.overhead import _in_subprocess, _run  # noqa: E402

# (harness.trial_processes, spare worker processes)
SETTINGS = (
    ("trial_actor", False),
    ("kept_worker_group", True),
    ("reused_actor", True),
    ("reused_actor", False),
    ("controller_in_trial", False),
    ("ray", False),
)


def sweep_starts(trials: int, storage: str, processes: str, spares: bool = True, epochs: int = 2) -> dict:
    """Start to first epoch of each trial of one sweep, run one trial at a time: the first trial
    also pays what a fresh cluster starts once (Ray Train's autoscaling coordinator, pooled
    processes), the later ones show what every further trial of a sweep pays. Also the gap from
    one trial's end to the next one's start (Tune ends the old trial actor and starts a new
    one, or resets a reused one), and the sweep's wall time, first start to last end."""
    from distsearch import constants as C

    # spares: the defaults, which here (1 worker of 1 CPU on 2 CPUs leaves a CPU free) give every
    # trial a spare, or only the first where groups are kept
    t, e = _run(epochs, 1, storage, trials=trials, trial_processes=processes, **({} if spares else {"spare_worker_keep_alive_s": 0.0}))
    first = e[e[C.EPOCH] == 1].set_index(C.TRIAL_ID)
    starts = [
        first.loc[r[C.TRIAL_ID], C.TIMESTAMP].timestamp() - first.loc[r[C.TRIAL_ID], C.EPOCH_SECONDS] - r[C.STARTED_AT].timestamp()
        for _, r in t.iterrows()
    ]
    later = pd.Series(starts[1:])
    gaps = (t[C.STARTED_AT].iloc[1:].to_numpy() - t[C.ENDED_AT].iloc[:-1].to_numpy()) / pd.Timedelta(seconds=1)
    return {
        "trial_processes": processes,
        "spare_workers": spares,
        "trials": len(starts),
        "first_trial_s": starts[0],
        "later_trials_median_s": float(later.median()),
        "later_trials_min_s": float(later.min()),
        "later_trials_max_s": float(later.max()),
        "between_trials_median_s": float(pd.Series(gaps).median()),
        "sweep_s": (t[C.ENDED_AT].max() - t[C.STARTED_AT].min()).total_seconds(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", choices=["smoke"], help="smoke: every row with 2 trials of 1 epoch (a Ray each), no record")
    ap.add_argument("--trials", type=int, default=4, help="trials per sweep (at least 2)")
    ap.add_argument("--out", default="starts.parquet")
    args = ap.parse_args()
    if args.trials < 2:
        ap.error("--trials must be at least 2: the later trials are the point")
    epochs = 2
    if args.mode == "smoke":
        args.trials, epochs, args.out = 2, 1, str(Path(tempfile.gettempdir(), "starts-smoke.parquet"))
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as storage:
        starts = pd.DataFrame([_in_subprocess("sweep_starts", args.trials, storage, p, sp, epochs, module="benchmarks.starts") for p, sp in SETTINGS])
    starts.to_parquet(args.out, index=False)
    print(f"\nStart to first epoch (s) in one sweep of {args.trials} trials of {epochs} epochs, one at a time:\n")
    print(markdown(starts))
    print(f"\nfigures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("starts", main, "starts.parquet"))
