"""Harness overhead: one training recipe run four ways, side by side, in one run.

    (i)   a plain PyTorch loop in one process (a fresh ``python``; saves a checkpoint per epoch)
    (ii)  a distsearch trial with 1 worker (its defaults: trained in the trial's Tune actor)
    (iii) a distsearch trial with 2 Train workers (gloo DDP, in a kept worker group)
    (iv)  Ray's documented naive pattern: a Tune function trainable that builds a TorchTrainer
          with ``TuneReportCallback`` and calls ``fit()``, every setting at Ray's default
    plus  (ii) in a Ray Train worker group its actor keeps, and that with Ray's default report
          poll interval (2 s), with Ray's default synchronous checkpoint upload, and with Ray
          Train's controller as its own actor, and (iii) without spare worker processes, to show
          what each setting buys;
    and, with ``--long-epochs N``, (i) and (ii) again with N-epoch trials, since start and
          teardown are paid once per trial and efficiency depends on the trial's length.

What each further trial of a sweep pays to start, with and without actor reuse and spare worker
processes, is ``benchmarks/starts.py``.

The distsearch rows run with distsearch's defaults: the driver's first spare worker processes
serve each single trial's workers.

All run the same loop (``distsearch.train.loop.train``) on digits with the same recipe, one torch
thread per worker, and report (with a checkpoint) once per epoch. For each:

- start to first epoch (s): from the trial's start (the process launch, for (i)) to its first
  epoch's start (the first report's arrival minus that epoch's own seconds);
- report cost (ms): (last report's arrival - first's - the epochs' own seconds in between) / reports;
- teardown (s): last report's arrival to the worker group's resources being free again;
- efficiency: training seconds of all workers / (wall seconds x CPU slots reserved).

    python benchmarks/overhead.py [--epochs 8] [--repeats 3] [--long-epochs 0] [--out overhead.parquet]
    python benchmarks/overhead.py smoke     # every row once at 1 epoch, no record: that the script still runs

(i), (ii) and (iii) run ``--repeats`` times, interleaved, since one run's figures on a small
shared machine vary by tens of percent; the table gives each mode's median (ratios are of
medians) and a second table the spread. Writes every run's figures to Parquet. About 10 minutes
on 2 cores (Intel Xeon with AVX-512, 2026-12-02); ``--long-epochs 24`` adds about 4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_recorded  # noqa: E402

# A recipe whose epochs take over a second on one core (1.6 s here): a wide MLP, small batches.
PARAMS = {"model": "mlp", "model.depth": 4, "model.width": 1024, "model.activation": "relu", "lr": 0.001, "optimizer": "adam", "batch_size": 16}
SPACE = {"model": {"choice": {"mlp": {"depth": 4, "width": 1024, "activation": "relu"}}}, "lr": 0.001, "optimizer": "adam", "batch_size": 16}


def _figures(mode: str, started: float, arrivals: list[float], epoch_s: list[float], freed: float, slots: float, workers: int) -> dict:
    # reports drain in bursts (Train polls its workers), so a single gap says little: spread the
    # time between the first and last arrival that training does not explain over the reports
    per_report = ((arrivals[-1] - arrivals[0]) - sum(epoch_s[1:])) / (len(arrivals) - 1) if len(arrivals) > 1 else float("nan")
    wall = freed - started
    return {
        "mode": mode,
        "workers": workers,
        "cpu_slots": slots,
        "epochs": len(arrivals),
        "epoch_s": float(pd.Series(epoch_s).median()),
        "start_to_first_epoch_s": arrivals[0] - epoch_s[0] - started,
        "report_cost_ms": 1000 * per_report,
        "teardown_s": freed - arrivals[-1],
        "wall_s": wall,
        "efficiency": sum(epoch_s) * workers / (wall * slots),
    }


# ---- (i) ------------------------------------------------------------------------------------
PLAIN = r"""
import json, sys, tempfile, time, torch
torch.set_num_threads(1)
from distsearch.train import loop
from distsearch.tasks import make_task
params, epochs = json.loads(sys.argv[1]), int(sys.argv[2])
task = make_task("digits", {})
splits = task.splits(0).without_test()
out, ckpt = [], tempfile.mktemp()
def report(metrics, state):
    if state is not None:
        torch.save(state, ckpt)
    out.append((time.time(), metrics["epoch_seconds"]))
loop.train(task, params, report, max_epochs=epochs, seed=0, splits=splits)
print(json.dumps(out))
"""


def plain(epochs: int, label: str = "(i) plain PyTorch, 1 process") -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", PLAIN, json.dumps(PARAMS), str(epochs)], cwd=ROOT, capture_output=True, text=True, check=True)
    freed = time.time()
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    return _figures(label, t0, [r[0] for r in rows], [r[1] for r in rows], freed, 1, 1)


# ---- (ii), (iii) ----------------------------------------------------------------------------
def _run(epochs: int, workers: int, storage: str, trials: int = 1, **harness):
    """One FIFO distsearch run of the recipe, trials one at a time; returns (trials, epochs) tables."""
    from distsearch import constants as C
    from distsearch.job import run_job
    from distsearch.results.files import read_run
    from distsearch.spec.model import parse_job

    spec = parse_job(
        {
            "name": f"overhead{workers}",
            "task": "digits",
            "seed": 0,
            "metric": "val_accuracy",
            "mode": "max",
            "space": SPACE,
            "budget": {"num_trials": trials, "max_epochs": epochs},
            "asha": {"enabled": False},
            "max_concurrent_trials": 1,
            "scaling": {"num_workers": workers, "cpus_per_worker": 1},
            "harness": harness,
            "storage": storage,
        }
    )
    run = read_run(run_job(spec).run_dir)
    return run["trials"].sort_values(C.STARTED_AT), run["epochs"].sort_values([C.TRIAL_ID, C.EPOCH])


def distsearch_trial(
    epochs: int,
    workers: int,
    storage: str,
    poll_s: Optional[float] = None,
    label: str = "",
    upload: str = "async",
    processes: str = "auto",
    spares: bool = True,
) -> dict:
    from distsearch import constants as C

    trials, e = _run(
        epochs,
        workers,
        storage,
        **({} if poll_s is None else {"report_poll_interval_s": poll_s}),
        checkpoint_upload=upload,
        trial_processes=processes,
        **({} if spares else {"spare_worker_keep_alive_s": 0.0}),
    )
    t = trials.iloc[0]
    arrivals = [ts.timestamp() for ts in e[C.TIMESTAMP]]
    freed = t[C.ENDED_AT].timestamp() + (t[C.RELEASE_SECONDS] or 0.0)
    name = label or f"({'ii' if workers == 1 else 'iii'}) distsearch, {workers} worker{'s' if workers > 1 else ''}"
    return _figures(name, t[C.STARTED_AT].timestamp(), arrivals, list(e[C.EPOCH_SECONDS]), freed, workers, workers)


# ---- (iv) -----------------------------------------------------------------------------------
def naive(epochs: int, storage: str) -> dict:
    """Ray's documented pattern with defaults: the trial function reserves Tune's default 1 CPU,
    the TorchTrainer its 1-CPU worker; Ray starts with its defaults (dashboard included)."""
    import ray
    from ray import tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from distsearch.spec.model import parse_job
    from distsearch.tasks import make_task
    from distsearch.train.worker import train_worker

    job = parse_job(
        {
            "name": "naive",
            "task": "digits",
            "seed": 0,
            "metric": "val_accuracy",
            "mode": "max",
            "space": SPACE,
            "budget": {"num_trials": 1, "max_epochs": epochs},
            "scaling": {"num_workers": 1, "cpus_per_worker": 1},
            "storage": storage,
            "harness": {"checkpoint_upload": "sync"},  # Ray's default
        }
    ).to_dict()
    ray.init()
    task = make_task("digits", {})
    data = [ray.put((task, task.splits(0).without_test()))]
    arrivals: dict[str, list] = {"t": [], "e": [], "start": []}

    class Clock(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            arrivals["start"].append(time.time())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            arrivals["t"].append(time.time())
            arrivals["e"].append(result["epoch_seconds"])

    def train_fn(config):
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"job": job, "params": PARAMS, "data": data},
            scaling_config=ScalingConfig(num_workers=1),
            run_config=RunConfig(storage_path=storage, callbacks=[TuneReportCallback()]),
        )
        trainer.fit()

    tuner = tune.Tuner(train_fn, run_config=tune.RunConfig(storage_path=storage, callbacks=[Clock()], verbose=0))
    tuner.fit()
    done = time.time()
    # free again: no placement group of this job left alive
    job_id = ray.get_runtime_context().get_job_id()
    while any(pg.endswith(job_id) and i["state"] != "REMOVED" for pg, i in ray.util.placement_group_table().items()):
        if time.time() - done > 60:
            break
        time.sleep(0.05)
    freed = time.time()
    ray.shutdown()
    return _figures("(iv) Ray's naive pattern, 1 worker", arrivals["start"][0], arrivals["t"], arrivals["e"], freed, 2, 1)


def _in_subprocess(fn: str, *args, module: str = "benchmarks.overhead") -> dict:
    """Run ``module.fn(*args)`` in a fresh interpreter, so each run gets its own Ray and nothing warm."""
    code = f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from {module} import {fn}; print('RESULT' + json.dumps({fn}(*{args!r})))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0"})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"{fn}{args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT") :])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", choices=["smoke"], help="smoke: every row once, 1 epoch each (minutes: each row starts its own Ray)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--long-epochs", type=int, default=0, help="epochs of longer (i) and (ii) rows, e.g. 24; 0 (default) leaves them out")
    ap.add_argument("--out", default="overhead.parquet")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each of (i), (ii) and (iii), interleaved")
    args = ap.parse_args()
    if args.mode == "smoke":
        args.epochs, args.repeats, args.long_epochs, args.out = 1, 1, 0, os.path.join(tempfile.gettempdir(), "overhead-smoke.parquet")
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as storage:
        rows = []
        for repeat in range(args.repeats):
            rows += [
                {**row, "repeat": repeat}
                for row in (
                    plain(args.epochs),
                    _in_subprocess("distsearch_trial", args.epochs, 1, storage),
                    _in_subprocess("distsearch_trial", args.epochs, 2, storage),
                )
            ]
        rows += [
            _in_subprocess("distsearch_trial", args.epochs, 2, storage, 0.1, "(iii) without spare worker processes", "async", "reused_actor", False),
            _in_subprocess("naive", args.epochs, storage),
            _in_subprocess("distsearch_trial", args.epochs, 1, storage, 0.1, "(ii) in a kept Train worker group", "async", "kept_worker_group"),
            _in_subprocess(
                "distsearch_trial",
                args.epochs,
                1,
                storage,
                2.0,
                "(ii) in a kept group, Ray's default poll interval, 2 s",
                "async",
                "kept_worker_group",
            ),
            _in_subprocess(
                "distsearch_trial",
                args.epochs,
                1,
                storage,
                0.1,
                "(ii) in a kept group, Ray's default synchronous upload",
                "sync",
                "kept_worker_group",
            ),
            _in_subprocess("distsearch_trial", args.epochs, 1, storage, 0.1, "(ii) with Ray's controller actor", "async", "ray"),
        ]
        if args.long_epochs:
            rows += [
                plain(args.long_epochs, f"(i) plain PyTorch, {args.long_epochs} epochs"),
                _in_subprocess("distsearch_trial", args.long_epochs, 1, storage, 0.1, f"(ii) distsearch, 1 worker, {args.long_epochs} epochs"),
            ]
    runs = pd.DataFrame(rows).assign(repeat=lambda d: d["repeat"].fillna(0).astype(int))
    runs.to_parquet(args.out, index=False)
    figures = ["epoch_s", "start_to_first_epoch_s", "report_cost_ms", "teardown_s", "wall_s", "efficiency"]
    grouped = runs.groupby("mode", sort=False)
    df = grouped[figures].median().assign(runs=grouped.size()).reset_index()
    base, naive_row = df.iloc[0], df[df["mode"].str.startswith("(iv)")].iloc[0]
    df["wall_vs_plain"] = df["wall_s"] / base["wall_s"]
    df["wall_vs_naive"] = df["wall_s"] / naive_row["wall_s"]
    df["efficiency_vs_naive"] = df["efficiency"] / naive_row["efficiency"]
    print(markdown(df[["mode", "runs", *figures, "wall_vs_plain", "wall_vs_naive", "efficiency_vs_naive"]]))
    if args.repeats > 1:
        spread = grouped.agg(
            **{f"{f} {stat}": (f, stat) for f in ("start_to_first_epoch_s", "report_cost_ms", "efficiency") for stat in ("min", "max")}
        )
        print(f"\nSpread over the {args.repeats} runs of each repeated mode (min, max):\n")
        print(markdown(spread[grouped.size() > 1].reset_index()))
    print(f"\nfigures of every run: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("overhead", main, "overhead.parquet"))
