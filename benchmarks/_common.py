"""Shared by the benchmark scripts: the machine, a job run through the CLI, and a markdown table."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def machine_line() -> str:
    """One line naming the machine and the date, printed above every benchmark's tables: timings
    compare only with others of the same machine, and a CPU model may round differently, so a
    seeded trial's curve can differ between machines (it is the same from run to run on one)."""
    import datetime
    import platform

    import ray
    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name"))
        model += ", AVX-512" if "avx512f" in cpuinfo else ", no AVX-512"
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (OSError, ValueError):
        mem = "? GiB"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}; {os.cpu_count()} cores ({model}), {mem}; Python {platform.python_version()}, torch {torch.__version__}, Ray {ray.__version__}"


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat); NaN elsewhere.
    A difference of two readings counts every process, Ray's included, and anything else running."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return float("nan")


def run_cli(raw: dict, workdir: Path, run_id: Optional[str], new_run: bool = True) -> tuple[dict, float]:
    """Write job ``raw`` into ``workdir``, run it as a user would (``distsearch run``, a fresh
    process with an embedded Ray, results under ``raw["storage"]``), and return the run as
    ``read_run`` gives it and the command's wall seconds. The run also gets
    ``machine_cpu_seconds``: what the whole machine spent busy during the command. Raises with
    the stderr tail if it fails. ``new_run=False`` resumes an unfinished run of ``run_id``.
    ``run_id=None`` lets the command choose the id, as a user's does (an explicit id waits out
    the claim's settle time, since another driver may name it too); ``raw["storage"]`` must then
    hold no other run of the job."""
    from distsearch.results.files import read_run

    job = workdir / f"{raw['name']}.yaml"
    # In the job's own key order: Tune draws a space's parameters in that order, so sorted keys
    # would give other trials than the shipped job file with the same seed.
    job.write_text(yaml.safe_dump(raw, sort_keys=False))
    t0, cpu0 = time.monotonic(), machine_cpu_seconds()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "distsearch",
            "run",
            str(job),
            *(["--run-id", run_id] if run_id else []),
            *(["--new-run"] if new_run else []),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall, cpu = time.monotonic() - t0, machine_cpu_seconds() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{proc.stderr[-3000:]}")
    runs = Path(raw["storage"], raw["name"])
    run = read_run(runs / run_id if run_id else next(d for d in runs.iterdir() if d.is_dir()))
    run["machine_cpu_seconds"] = cpu
    return run, wall


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


RESULTS_DIR = ROOT / "benchmarks" / "results"
TABLES = ROOT / "benchmarks" / "tables"


def tables_parser(doc: str, seeds: int, workers, out_help: str) -> argparse.ArgumentParser:
    """The arguments every simulated benchmark takes: tables (or ``smoke``), seeds, worker counts,
    processes and ``--out``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("tables", nargs="*", help="tables (default: every benchmarks/tables/*.parquet); 'smoke' for the smallest run")
    p.add_argument("--seeds", type=int, default=seeds)
    p.add_argument("--workers", default=",".join(map(str, workers)))
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="tables simulated at once")
    p.add_argument("--out", help=out_help)
    return p


def tables_of(args) -> tuple[list[Path], bool]:
    """The tables ``args`` names, or every shipped one, and whether it asked for the smoke run."""
    smoke = args.tables == ["smoke"]
    return ([Path(t) for t in args.tables] if args.tables and not smoke else sorted(TABLES.glob("*.parquet"))), smoke


class TablesFailed(RuntimeError):
    """Some tables raised; ``done`` holds the others' results, in the tables' order."""

    def __init__(self, done: list, failed: dict[str, BaseException]):
        super().__init__("tables that raised: " + "; ".join(f"{name}: {e!r}" for name, e in failed.items()))
        self.done, self.failed = done, failed


def per_table(fn, paths: list[Path], processes: int, *args, on_done=None) -> list:
    """``fn(path, *args)`` for every table, one table per process, in ``paths``' order.

    ``on_done(path, result)`` runs as each table finishes, so that a long run keeps each table as
    it ends. A table that raises does not stop the others; once all have ended, ``TablesFailed``
    carries the finished tables' results and each failure."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results, failed = {}, {}
    with ProcessPoolExecutor(max_workers=max(1, min(processes, len(paths)))) as pool:
        futures = {pool.submit(fn, path, *args): path for path in paths}
        for future in as_completed(futures):
            path = futures[future]
            try:
                results[path] = future.result()
            except Exception as e:  # noqa: BLE001 - the other tables go on; the caller gets it as TablesFailed
                print(f"{path.stem}: {e!r}", file=sys.stderr)
                failed[path.stem] = e
                continue
            if on_done is not None:
                on_done(path, results[path])
    done = [results[p] for p in paths if p in results]
    if failed:
        raise TablesFailed(done, failed)
    return done


def cpu_slug() -> str:
    """The CPU model as a file-name part, e.g. ``amd-epyc-9b14``."""
    import platform
    import re

    try:
        model = next(ln.split(":", 1)[1] for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    words = re.sub(r"\((r|tm)\)|cpu|processor|\d+-core|@.*", " ", model.lower())
    return "-".join(re.findall(r"[a-z0-9]+", words))[:40] or "unknown-cpu"


def _out_path(argv: list[str], default: str) -> Path:
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--out="):
            return Path(arg.split("=", 1)[1])
    return Path(default)


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()

    def __getattr__(self, name):  # encoding, isatty, fileno: the terminal's (Tune asks in-process)
        return getattr(self.streams[0], name)


def run_recorded(script: str, main, default_out: str) -> int:
    """Run a benchmark's ``main`` and keep its record: everything it printed, as markdown, and the
    Parquet it wrote to ``--out`` (and a PNG beside it), as
    ``benchmarks/results/<script>-<cpu>-<UTC date and time>`` (``.md``, ``.parquet``, ``.png``). A record is written once and never edited: an existing name is
    not overwritten. One that returns non-zero (a target missed) keeps its record and its exit
    status. One that raises (a later row failed, or Ctrl-C) keeps a record of what it printed
    so far, its rows included, marked incomplete with the error's last lines, and then raises:
    an hour of measurements is not lost to the last row. A smoke run (first argument ``smoke``)
    checks that the script works and is not a record: it only runs ``main``."""
    if sys.argv[1:2] == ["smoke"]:
        return main()
    import datetime
    import io
    import shutil
    import traceback

    started = datetime.datetime.now(datetime.timezone.utc)
    printed = io.StringIO()
    stdout = sys.stdout
    sys.stdout = _Tee(stdout, printed)
    failure = None
    try:
        code = main()
    except SystemExit as e:
        if e.code in (0, 2, None):  # --help, or a command line argparse refused: nothing was measured
            sys.stdout = stdout
            raise
        failure, code = e, 1
        printed.write(f"\n\nINCOMPLETE: the run exited with {e.code!r}; the rows above were measured before it.\n")
    except BaseException as e:  # KeyboardInterrupt too: keep what was measured, then re-raise
        failure, code = e, 1
        tail = "".join(traceback.format_exception(e)).strip().splitlines()[-15:]
        printed.write("\n\nINCOMPLETE: the run raised; the rows above were measured before it.\n" + "\n".join(tail) + "\n")
    finally:
        sys.stdout = stdout
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = f"{script}-{cpu_slug()}-{started:%Y-%m-%d-%H%M}" + ("-incomplete" if failure is not None else "")
    command = " ".join(["python", f"benchmarks/{script}.py", *sys.argv[1:]])
    text = f"# {script}.py, {started:%Y-%m-%d %H:%M} UTC\n\nCommand: `{command}`\n\n```\n{printed.getvalue().rstrip()}\n```\n"
    with open(RESULTS_DIR / f"{name}.md", "x") as f:  # "x": a record is never overwritten
        f.write(text)
    out = _out_path(sys.argv[1:], default_out)
    if out.is_file():
        shutil.copyfile(out, RESULTS_DIR / f"{name}.parquet")
    if out.with_suffix(".png").is_file():  # a figure the run drew beside its Parquet
        shutil.copyfile(out.with_suffix(".png"), RESULTS_DIR / f"{name}.png")
    print(f"record: {RESULTS_DIR.relative_to(ROOT) / name}.md")
    if failure is not None:
        raise failure
    return code or 0


# Ray's pattern: the function trainable only waits on its trainer, so it takes a token share of a
# CPU (Tune refuses 0) and the Train worker the rest: one trial per core, as the other methods run.
RAY_PATTERN_DRIVER_CPU = 0.01


def report_with_weights(send):
    """A loop ``report`` for Ray's patterns: it saves the epoch's model weights (``model.pt``) in a
    temporary folder and calls ``send(metrics, folder)``, which reports them as a checkpoint."""
    import tempfile

    import torch

    def report(metrics, state):
        with tempfile.TemporaryDirectory() as d:
            torch.save(state["model"] if state else {}, os.path.join(d, "model.pt"))
            send(metrics, d)

    return report


def ray_pattern(
    task,
    splits,
    params_of,
    *,
    search_alg,
    scheduler,
    param_space,
    num_samples: int,
    slots: int,
    max_epochs: int,
    seed: int,
    metric: str,
    mode: str,
    callbacks,
    stop=None,
) -> tuple[dict, float, dict]:
    """Ray's documented Train V2 + Tune pattern over distsearch's loop: a Tune function trainable
    that builds a one-worker ``TorchTrainer`` with ``TuneReportCallback``, a checkpoint reported
    every epoch. ``params_of`` maps a Tune config to the loop's parameters; ``stop``: Tune's
    ``RunConfig.stop``. Returns the best trial's parameters, its best epoch's metric and that
    epoch's model state."""
    import tempfile

    import ray
    import torch
    from ray import tune
    from ray.train import Checkpoint, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from distsearch.train.loop import train

    data = ray.put(splits.without_test())

    def train_fn_per_worker(config):
        torch.set_num_threads(1)

        report = report_with_weights(lambda metrics, d: ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d)))
        train(task, config["params"], report, max_epochs=max_epochs, seed=seed, splits=ray.get(config["data"]))

    with tempfile.TemporaryDirectory() as storage:

        def train_driver_fn(config):
            TorchTrainer(
                train_fn_per_worker,
                train_loop_config={"params": params_of(config), "data": data},
                scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1 - RAY_PATTERN_DRIVER_CPU}),
                run_config=RunConfig(storage_path=storage, callbacks=[TuneReportCallback()]),
            ).fit()

        tuner = tune.Tuner(
            tune.with_resources(train_driver_fn, {"cpu": RAY_PATTERN_DRIVER_CPU}),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler, num_samples=num_samples, max_concurrent_trials=slots
            ),
            run_config=tune.RunConfig(storage_path=storage, callbacks=callbacks, stop=stop, verbose=0),
        )
        best = tuner.fit().get_best_result(metric=metric, mode=mode, scope="all")
        history = best.metrics_dataframe  # TuneReportCallback hands Tune each checkpoint's path as a metric
        row = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
        state = torch.load(os.path.join(row["checkpoint_path"], "model.pt"), weights_only=True)
    ray.shutdown()
    return params_of(best.config), float(row[metric]), state
