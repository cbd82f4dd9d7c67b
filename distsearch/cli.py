"""The command line: ``distsearch validate JOB [JOB ...] | run JOB | report RUN [RUN ...] | resave-models RUN``.

Exit codes: 0, success; 1, the sweep ran but failed as a whole (the error budget ended it, or no
trial produced a model to select), or a bug in distsearch (the message says where its traceback
went); 2, invalid input (a job spec, a path, a cluster address: ``errors.UserError``); 3, the run's
storage failed mid-run (full, read-only, unreachable: ``errors.StorageFailed``), and the same command resumes it once it works;
130, interrupted (SIGINT, Ctrl-C): the run is left unfinished, and the same command resumes it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn, Optional, Sequence

from . import constants as C
from . import registry
from .errors import StorageFailed, UserError
from .spec.model import load_job, parse_job


def _load(path: str, storage: Optional[str] = None, dry_run: bool = True):
    """The job at ``path`` (with ``storage`` in place of its own, if given) and its task, both
    validated, once, before Ray starts."""
    from .validate import check_job

    spec = load_job(path)
    if storage:
        spec = parse_job({**spec.to_dict(), "storage": storage}, f"{path} with --storage")
    return spec, check_job(spec, dry_run=dry_run)


def _validate(paths: Sequence[str], dry_run: bool) -> int:
    """Check each job file; print each one's verdict. Exit 2 if any is invalid."""
    failed = 0
    for path in paths:
        try:
            spec, _ = _load(path, dry_run=dry_run)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(
            f"{path}: valid ({spec.task}, {spec.budget.num_trials} trials x {spec.budget.max_epochs} epochs, "
            f"{spec.scaling.num_workers} workers per trial)"
        )
    if failed and len(paths) > 1:
        print(f"error: {failed} of {len(paths)} job files are invalid", file=sys.stderr)
    return 2 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: subcommands validate, run and report."""
    p = argparse.ArgumentParser(prog="distsearch", description="Distributed hyperparameter and model search on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check job specs without starting Ray")
    v.add_argument("jobs", nargs="+", metavar="JOB", help="one or more job files; each is checked, and every problem printed")
    v.add_argument("--no-dry-run", action="store_true", help="skip building each model family and running one small batch through it")
    r = sub.add_parser("run", help="run a job's sweep (embedded Ray unless --address or RAY_ADDRESS)")
    r.add_argument("job")
    r.add_argument("--no-dry-run", action="store_true", help="skip building each model family and running one small batch through it")
    r.add_argument("--address", help="Ray cluster address, e.g. auto or ray://host:10001; default: $RAY_ADDRESS, else embedded")
    r.add_argument("--run-id", help="name of the run folder (default: UTC time and a random suffix); an unfinished run of that id is resumed")
    how = r.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help="resume the newest unfinished run of this job (or --run-id), or fail saying why not")
    how.add_argument(
        "--new-run", action="store_true", help="always start a new run (default: resume the newest run of this job and spec if its driver died)"
    )
    r.add_argument("--storage", help="override the job's storage: a local path or URI (use an absolute path or URI under `ray job submit`)")
    r.add_argument("--dashboard", action="store_true", help="start the dashboard with the embedded Ray (not needed for cleanup)")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.add_argument("--worker-logs", action="store_true", help="forward the Train workers' output (default: Ray's log files only)")
    rep = sub.add_parser("report", help="leaderboard, report.html and figures of a run; two or more runs: side by side")
    rep.add_argument("runs", nargs="+", metavar="RUN", help="run directory: a local path or a storage URI")
    rep.add_argument("--top", type=int, default=10, help="leaderboard rows")
    rep.add_argument(
        "--out",
        help="where report.html and the PNG figures go (default: the run directory); with two or more runs, "
        "where compare.html and compare.png go (default: none written)",
    )
    rep.add_argument("--no-html", action="store_true", help="print only; write no files")
    rs = sub.add_parser(
        "resave-models", help="rewrite an older run's models (pickles, never read) as JSON and safetensors, from its checkpoints and its job's data"
    )
    rs.add_argument("run", metavar="RUN", help="run directory: a local path or a storage URI")
    ex = sub.add_parser("export", help="write a run's model as ONNX, with its preprocessing (and tokenizers) beside it")
    ex.add_argument("run", metavar="RUN", help="run directory: a local path or a storage URI")
    ex.add_argument("--format", default="onnx", choices=["onnx"], help="the model file's format")
    ex.add_argument("--out", required=True, help="folder for model.onnx, preprocessing.json and any tokenizer files")
    pr = sub.add_parser("predict", help="a run's model's predictions for a table (.csv, .parquet), images (a folder or files) or texts (.txt)")
    pr.add_argument("run", metavar="RUN", help="run directory: a local path or a storage URI")
    pr.add_argument("inputs", metavar="INPUT", nargs="+", help="one table, one .txt of texts (one per line), or image files and folders")
    pr.add_argument("--out", help="write the predictions here as Parquet (default: print the first rows)")
    for cmd in (ex, pr):
        which = cmd.add_mutually_exclusive_group()
        which.add_argument("--ensemble", action="store_true", help="the run's ensemble instead of the single best")
        which.add_argument("--trial", help="this trial at its best kept checkpoint instead of the single best")
    sim = sub.add_parser("simulate", help="replay a recorded run or table through the job's scheduler and searcher, in simulated time")
    sim.add_argument("source", metavar="TABLE_OR_RUN", help="a table (benchmarks/tables/*.parquet) or a finished run's directory")
    sim.add_argument("--workers", help="trials at once: N, or a list N,N,... for the sizing answer (default: the recorded run's)")
    sim.add_argument("--search", choices=sorted(registry.SEARCHERS), help="another searcher than the recorded job's")
    sim.add_argument("--scheduler", choices=sorted(registry.SCHEDULERS), help="early stopping by asha or pasha (asha.variant), or none (fifo)")
    sim.add_argument("--seeds", type=int, default=1, help="sweeps per worker count, seeded job.seed, job.seed + 1, ...")
    sim.add_argument("--trials", type=int, help="trials per sweep (default: the recorded job's num_trials); the surrogate answers the rest")
    sim.add_argument("--out", help="where the first sweep's run files and simulation.json go (default: none written)")
    return p


def _simulate(args) -> int:
    from .results import simulation
    from .simulate.table import read

    table = read(args.source)
    try:
        workers = [int(w) for w in args.workers.split(",")] if args.workers else [table.concurrency]
        if min(workers) < 1 or args.seeds < 1 or (args.trials is not None and args.trials < 1):
            raise ValueError
    except ValueError:
        raise UserError(
            f"--workers {args.workers!r} --seeds {args.seeds} --trials {args.trials}: fix: give whole numbers of 1 or more, "
            "e.g. --workers 8,32,128 --seeds 20 --trials 256"
        ) from None
    trials = (lambda n: args.trials) if args.trials else None
    sims, info = simulation.run_simulations(table, workers, args.seeds, search=args.search, scheduler=args.scheduler, trials=trials)
    print(simulation.format_sizes(info))
    if args.out:
        simulation.write_simulation(args.out, table, sims[0], info)
        print(f"results: {args.out} (simulation.json; the first sweep as trials.parquet and epochs.parquet)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "worker_logs", False):
        # Tune's per-trial INFO lines (result files written, hparams dropped) drown the progress
        # line; warnings and errors still show, and everything is in Ray's log files.
        for name in ("ray.tune", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)

    try:
        if args.command == "validate":
            return _validate(args.jobs, dry_run=not args.no_dry_run)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "export":
            from .select.export import export_model

            done = export_model(args.run, args.out, args.format, ensemble=args.ensemble, trial=args.trial)
            print(f"exported {', '.join(done['files'])} to {done['dir']} (members: {done['members']})")
            return 0
        if args.command == "predict":
            from .select.predict import predict

            preds = predict(args.run, args.inputs, args.out, ensemble=args.ensemble, trial=args.trial)
            print(preds.head(20).to_string(index=False))
            print(f"{len(preds)} predictions" + (f" written to {args.out}" if args.out else ""))
            return 0
        if args.command == "resave-models":
            from .select.evaluate import resave_models

            for path in resave_models(args.run):
                print(f"wrote {path}")
            return 0
        if args.command == "run":
            spec, task = _load(args.job, args.storage, dry_run=not args.no_dry_run)
            from concurrent.futures import Future, ThreadPoolExecutor

            from .job import run_job
            from .results import report

            drawn: list[Future] = []
            # The report is drawn in a thread while the embedded Ray shuts down, which is mostly
            # waiting for its processes to exit; matplotlib's Figure API keeps no global state to race on.
            with ThreadPoolExecutor(1, thread_name_prefix="report") as pool:
                result = run_job(
                    spec,
                    task=task,
                    address=args.address,
                    run_id=args.run_id,
                    dashboard=args.dashboard,
                    progress=not args.quiet,
                    worker_logs=args.worker_logs,
                    resume="require" if args.resume else "never" if args.new_run else "auto",
                    on_finished=lambda out: drawn.append(pool.submit(report.write_report, out)),
                )
                written = drawn[0].result()
            print(report.report_run(result.run_dir))
            print(f"results: {result.run_dir}\nreport: {written[report.REPORT_FILE]}")
            if result.error_budget_exceeded:
                print(
                    f"error: the sweep was ended early: {result.status_counts[C.STATUS_ERROR]} trials failed, more than "
                    f"budget.max_failed_trials = {spec.budget.max_failed_trials}; the results so far are written above "
                    f"({result.status_counts[C.STATUS_CANCELLED]} trials cancelled). fix: read the trials' errors in "
                    f"trials.parquet (distsearch report), mend the job, and run it again.",
                    file=sys.stderr,
                )
                return 1
            if result.best is None:
                print(
                    f"error: no trial finished an epoch with {spec.metric} ({result.status_counts[C.STATUS_ERROR]} of "
                    f"{sum(result.status_counts.values())} failed), so nothing was selected or tested. fix: read the trials' errors "
                    f"in trials.parquet (distsearch report {result.run_dir}), mend the job, and run it again.",
                    file=sys.stderr,
                )
                return 1
            return 0
        if args.command == "report":
            from .results import report

            if len(args.runs) > 1:
                print(report.format_compare(args.runs))
                if args.out and not args.no_html:
                    written = report.write_compare(args.runs, args.out)
                    print(f"report: {written[report.COMPARE_FILE]} (figure: {report.COMPARE_FIGURE})")
                return 0
            print(report.report_run(args.runs[0], args.top))
            if not args.no_html:
                written = report.write_report(args.runs[0], args.out, top=max(args.top, 20))
                print(f"report: {written[report.REPORT_FILE]} (figures: {', '.join(n for n in written if n.endswith('.png'))})")
            return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StorageFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # noqa: BLE001 - anything not the user's mistake is ours: say so, keep the traceback
        where = _save_traceback()
        print(
            f"error: a bug in distsearch ({type(e).__name__}: {e}); the traceback is in {where}: please report it with that "
            f"file. A run it interrupted resumes with the same command.",
            file=sys.stderr,
        )
        return 1
    return 1


def entry() -> NoReturn:
    """The console script and ``python -m distsearch``: ``main``, then the process's exit, without
    the interpreter's last garbage collections. Those walk every object torch, Ray and pyarrow
    made and free nothing a finished command needs (its files are written and closed by now),
    yet take longer than the report; frozen objects are left out of them (``gc.freeze``). It
    ends the process, so no caller goes on with a frozen collector; call ``main`` to go on."""
    code = main()
    import gc

    gc.freeze()
    sys.exit(code)


def _save_traceback() -> str:
    """The current exception's traceback, written to a new file whose path is returned."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="distsearch-bug-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        traceback.print_exc(file=f)
    return path
