"""``distsearch validate JOB | run JOB | report RUN``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from .spec import SpecError, load_job, parse_job


def _load(path: str):
    from .tasks import check_job

    spec = load_job(path)
    check_job(spec)
    return spec


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="distsearch", description="Distributed hyperparameter and model search on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a job spec without starting Ray")
    v.add_argument("job")
    r = sub.add_parser("run", help="run a job's sweep (embedded Ray unless --address or RAY_ADDRESS)")
    r.add_argument("job")
    r.add_argument("--address", help="Ray cluster address, e.g. auto or ray://host:10001; default: $RAY_ADDRESS, else embedded")
    r.add_argument("--run-id", help="name of the run folder (default: UTC time and a random suffix)")
    r.add_argument("--storage", help="override the job's storage: a local path or URI (use an absolute path or URI under `ray job submit`)")
    r.add_argument("--dashboard", action="store_true", help="start the dashboard with the embedded Ray (not needed for cleanup)")
    r.add_argument("--quiet", action="store_true", help="no Tune progress table")
    rep = sub.add_parser("report", help="print the leaderboard of a run directory (local path or URI)")
    rep.add_argument("run")
    rep.add_argument("--top", type=int, default=10)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "validate":
            spec = _load(args.job)
            print(f"{args.job}: valid ({spec.task}, {spec.budget.num_trials} trials x {spec.budget.max_epochs} epochs, "
                  f"{spec.scaling.num_workers} workers per trial)")
            return 0
        if args.command == "run":
            spec = _load(args.job)
            if args.storage:
                spec = parse_job({**spec.to_dict(), "storage": args.storage}, f"{args.job} with --storage")
            from .report import report_run
            from .runner import run_job

            result = run_job(spec, address=args.address, run_id=args.run_id, dashboard=args.dashboard, verbose=0 if args.quiet else 1)
            print(report_run(result.run_dir))
            print(f"results: {result.run_dir}")
            return 0
        if args.command == "report":
            from .report import report_run

            print(report_run(args.run, args.top))
            return 0
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1
