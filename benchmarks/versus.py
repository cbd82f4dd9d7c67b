"""Versus: distsearch's search against what a user would pick instead, on real runs of shipped jobs, with the simulator's prediction beside.

    python benchmarks/versus.py [JOB ...] [--seeds 5] [--methods distsearch,distsearch-tpe,distsearch-promote,ray,optuna] [--worker-epochs N]
                                [--out versus.parquet]
    python benchmarks/versus.py smoke     # the quickstart, 1 seed, 4 trials of 3 epochs, 6 worker-epochs

Each job (default: jobs/quickstart.yaml and jobs/wine.yaml) runs as it ships (its space, budget,
ASHA grace and reduction factor), one process per trial, two trials at a time (the cores), seeds
0..K-1, by four methods, each in a fresh interpreter and interleaved per seed:

- ``distsearch``: ``distsearch run`` at distsearch's default, random search under ASHA;
- ``distsearch-tpe``: the same with ``search.algorithm: tpe`` (Optuna's TPE, told what ASHA did);
- ``distsearch-promote``: random search under ``asha.variant: promote`` (trials pause at the
  rungs and the promoted ones resume from their checkpoints; not in the default list);
- ``ray``: Ray's documented pattern: a Tune function trainable that builds a ``TorchTrainer``
  with ``TuneReportCallback``, ``OptunaSearch`` (its TPE, define-by-run over the job's space) and
  ``ASHAScheduler``, both at their defaults (grace 1 report, reduction factor 4), a checkpoint
  reported every epoch, the best scored on test;
- ``optuna``: Optuna alone: ``TPESampler`` with ``HyperbandPruner`` (min_resource the job's
  grace, max_resource its max_epochs, its reduction factor), two processes of one torch thread
  each sharing one study through a journal file (Optuna's storage for processes on one
  machine), plain PyTorch; the best epoch's weights kept in memory and scored on test once.

All train with distsearch's own loop (``distsearch.train.loop.train``) on the same splits: what
differs is the search and the harness. Each method gets the same trials and epochs, and the
worker-epochs it spends are reported; or, with ``--worker-epochs N``, the same budget of N
worker-epochs (``budget.worker_epochs`` for distsearch, a Tune stopper for Ray's pattern, a count
that prunes the study's trials past it for Optuna), with as many trials as it likes. A job's
target is distsearch's median final best validation value over the seeds (the lower median, which half its seeds reach). Per method,
medians over seeds: worker-epochs to the target, in the order results arrived (a seed that never
gets there counts as never), and its ratio to distsearch's; the share of seeds that get there;
seconds from the interpreter's start to the target; worker-epochs spent; the command's seconds;
the final best and its test score. Beside the two distsearch rows, the simulator's prediction
(``benchmarks/tables/<job>.parquet``, the same searcher, scheduler, budget and seeds, 2 workers):
its worker-epochs to the same target and its final best.
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

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
if not __package__:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import TABLES, machine_line, markdown, ray_pattern, run_cli, run_recorded  # noqa: E402

METHODS = ("distsearch", "distsearch-tpe", "ray", "optuna")
CHOICES = METHODS + ("distsearch-promote",)
#: distsearch's methods: (searcher, asha.variant)
SEARCH = {"distsearch": ("random", "asha"), "distsearch-tpe": ("tpe", "asha"), "distsearch-promote": ("random", "promote")}
BASELINE = "distsearch"
JOBS = ("jobs/quickstart.yaml", "jobs/wine.yaml")
SLOTS = 2


def _raw(job: str, seed: int, trials: int | None, epochs: int | None, worker_epochs: int | None = None) -> dict:
    """The job as shipped, with this seed and budget; with ``worker_epochs``, a budget of that many
    worker-epochs, which then ends the sweep (a trial costs at least one, so as many trials cap nothing)."""
    raw = yaml.safe_load((ROOT / job).read_text())
    raw["seed"] = seed
    raw["budget"] = {**raw["budget"], **({"num_trials": trials} if trials else {}), **({"max_epochs": epochs} if epochs else {})}
    if worker_epochs:
        raw["budget"].update(worker_epochs=worker_epochs, num_trials=worker_epochs)
    return raw


def _spec_task(raw: dict):
    from distsearch.spec.model import parse_job
    from distsearch.tasks import make_task

    spec = parse_job(raw)
    task = make_task(spec.task, spec.task_options)
    return spec, task, task.splits(spec.seed)


class ParamsOf:
    """OptunaSearch's flat names back to the loop's parameters, replayed through the job's space."""

    def __init__(self, space):
        self.space = space

    def __call__(self, config: dict) -> dict:
        import optuna

        from distsearch.search.tpe import sample
        from distsearch.space.names import flatten

        return flatten(sample(optuna.trial.FixedTrial(config), self.space))


class DefineByRun:
    """OptunaSearch's define-by-run space: the job's space, suggested on Optuna's trial. A class,
    not a closure, since Tune pickles its searcher with the experiment's state."""

    def __init__(self, space):
        self.space = space

    def __call__(self, trial) -> None:
        from distsearch.search.tpe import sample

        sample(trial, self.space)


def _test_score(task, splits, params: dict, state: dict, metric: str) -> float:
    import torch

    from distsearch.train.loop import evaluate

    model = task.build_model(params, splits)
    model.load_state_dict(state)
    return float(task.metrics_from_sums(evaluate(task, model, splits.test, torch.device("cpu")))[metric.removeprefix("val_")])


# ---- each method, in its own interpreter: {"epochs": [[arrival, value, trial]], "best_val", "test"} ----
def run_distsearch(
    job: str, seed: int, trials: int | None, epochs: int | None, worker_epochs: int | None = None, search: str = "random", variant: str = "asha"
) -> dict:
    from distsearch import constants as C

    raw = _raw(job, seed, trials, epochs, worker_epochs)
    raw["asha"] = {**raw.get("asha", {}), "variant": variant}
    raw.update(
        search={"algorithm": search}, scaling={"num_workers": 1, "cpus_per_worker": 1}, max_concurrent_trials=SLOTS, ensemble={"enabled": False}
    )
    with tempfile.TemporaryDirectory() as storage:
        raw["storage"] = storage
        run, _ = run_cli(raw, Path(storage), None)
    ep = run["epochs"].dropna(subset=[raw["metric"]])
    rows = [[t.timestamp(), float(v), str(tid)] for t, v, tid in zip(ep[C.TIMESTAMP], ep[raw["metric"]], ep[C.TRIAL_ID], strict=True)]
    best = run["best"]
    return {"epochs": rows, "best_val": best["val_metric"], "test": best["test"][raw["metric"].replace("val_", "test_", 1)]}


def run_distsearch_tpe(job: str, seed: int, trials: int | None, epochs: int | None, worker_epochs: int | None = None) -> dict:
    return run_distsearch(job, seed, trials, epochs, worker_epochs, search="tpe")


def run_distsearch_promote(job: str, seed: int, trials: int | None, epochs: int | None, worker_epochs: int | None = None) -> dict:
    return run_distsearch(job, seed, trials, epochs, worker_epochs, variant="promote")


def _optuna_process(job: str, seed: int, trials, epochs, worker_epochs, rank: int, journal: str, out: str, spent) -> None:
    """One of Optuna alone's processes: the shared study (a journal file, Optuna's storage for
    processes on one machine) optimised in this process with its own sampler seed, until the
    study holds the budget's trials or ``spent`` (shared with the other process) reaches
    ``worker_epochs``. Writes its results' arrival times and its best epoch's weights to ``out``."""
    import optuna
    import torch

    from distsearch.search.tpe import sample
    from distsearch.space.names import flatten
    from distsearch.train.loop import train

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, task, splits = _spec_task(_raw(job, seed, trials, epochs, worker_epochs))
    sign = 1 if spec.mode == "max" else -1
    rows, best = [], {"val": None}
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    asha = spec.asha
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=asha.grace_period_epochs, max_resource=spec.budget.max_epochs, reduction_factor=int(asha.reduction_factor)
    )
    study = optuna.load_study(study_name="versus", storage=storage, sampler=optuna.samplers.TPESampler(seed=seed * 100 + rank), pruner=pruner)

    def objective(trial):
        params = flatten(sample(trial, spec.space))
        value = None

        def report(metrics, state):
            nonlocal value
            with spent.get_lock():
                if worker_epochs and spent.value >= worker_epochs:  # spent: this epoch is past the budget
                    study.stop()
                    raise optuna.TrialPruned()
                spent.value += 1
            value = float(metrics[spec.metric])
            rows.append([time.time(), value, f"{rank}-{trial.number}"])
            if best["val"] is None or sign * value > sign * best["val"]:
                best.update(val=value, params=params, state={k: v.clone() for k, v in state["model"].items()})
            trial.report(value, int(metrics["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        train(task, params, report, max_epochs=spec.budget.max_epochs, seed=spec.seed, splits=splits.without_test())
        return value

    study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(spec.budget.num_trials, states=None)])
    torch.save({"rows": rows, "best": best}, out)


def run_optuna(job: str, seed: int, trials: int | None, epochs: int | None, worker_epochs: int | None = None) -> dict:
    """Optuna alone as its docs run it on one machine: one study in a journal file, optimised by
    two processes (the slots), each in one torch thread; the best epoch's weights kept in memory
    and scored on test once, in this process."""
    import multiprocessing

    import optuna
    import torch

    spec, task, splits = _spec_task(_raw(job, seed, trials, epochs, worker_epochs))
    with tempfile.TemporaryDirectory() as tmp:
        journal = os.path.join(tmp, "journal.log")
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
        optuna.create_study(study_name="versus", storage=storage, direction="maximize" if spec.mode == "max" else "minimize")
        ctx = multiprocessing.get_context("spawn")
        spent = ctx.Value("i", 0)
        outs = [os.path.join(tmp, f"process-{rank}.pt") for rank in range(SLOTS)]
        procs = [
            ctx.Process(target=_optuna_process, args=(job, seed, trials, epochs, worker_epochs, rank, journal, outs[rank], spent))
            for rank in range(SLOTS)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"Optuna alone's processes exited with {[p.exitcode for p in procs]}")
        parts = [torch.load(out, weights_only=True) for out in outs]
    sign = 1 if spec.mode == "max" else -1
    best = max((p["best"] for p in parts if p["best"]["val"] is not None), key=lambda b: sign * b["val"])
    rows = [r for p in parts for r in p["rows"]]
    return {"epochs": rows, "best_val": best["val"], "test": _test_score(task, splits, best["params"], best["state"], spec.metric)}


def run_ray(job: str, seed: int, trials: int | None, epochs: int | None, worker_epochs: int | None = None) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    spec, task, splits = _spec_task(_raw(job, seed, trials, epochs, worker_epochs))
    rows: list[list] = []

    class Clock(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not worker_epochs or len(rows) < worker_epochs:
                rows.append([time.time(), float(result[spec.metric]), trial.trial_id])

    class Spent(tune.Stopper):
        """The sweep's end once the results the clock took, one a worker-epoch, reach ``worker_epochs``."""

        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return bool(worker_epochs) and len(rows) >= worker_epochs

    params, best_val, state = ray_pattern(
        task,
        splits,
        ParamsOf(spec.space),
        search_alg=OptunaSearch(space=DefineByRun(spec.space), metric=spec.metric, mode=spec.mode, seed=seed),
        scheduler=ASHAScheduler(),
        param_space={},
        num_samples=spec.budget.num_trials,
        slots=SLOTS,
        max_epochs=spec.budget.max_epochs,
        seed=spec.seed,
        metric=spec.metric,
        mode=spec.mode,
        callbacks=[Clock()],
        stop=Spent(),
    )
    return {"epochs": rows, "best_val": best_val, "test": _test_score(task, splits, params, state, spec.metric)}


def one(method: str, job: str, seed: int, trials: int | None, epochs: int | None, worker_epochs: int | None = None) -> dict:
    """Run one method in a fresh interpreter; its results' arrival times from the interpreter's start."""
    fn = "run_" + method.replace("-", "_")
    call = f"{fn}({job!r}, {seed}, {trials}, {epochs}, {worker_epochs})"
    code = f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.versus import {fn}; print('RESULT' + json.dumps({call}))"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0"})
    wall = time.time() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"{method} on {job}, seed {seed}, failed:\n{proc.stderr[-3000:]}")
    res = json.loads(line[len("RESULT") :])
    arrivals = sorted(res["epochs"])
    return {
        "job": Path(job).stem,
        "method": method,
        "seed": seed,
        "command_s": wall,
        "at_s": [a - t0 for a, _, _ in arrivals],
        "values": [v for _, v, _ in arrivals],
        "trials": len({t for _, _, t in arrivals}),
        "best_val": res["best_val"],
        "test": res["test"],
    }


# ---- to the target ---------------------------------------------------------------------------
def best_so_far(values, mode: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.maximum.accumulate(v) if mode == "max" else np.minimum.accumulate(v)


def predicted(
    job: str,
    search: tuple[str, str],
    seeds: int,
    trials: int | None,
    epochs: int | None,
    target: float,
    mode: str,
    worker_epochs: int | None = None,
) -> dict:
    """The simulator's worker-epochs to ``target`` and final best for distsearch with ``search``
    (searcher, ``asha.variant``) on the job's table, over the same seeds and budget, at 2 workers."""
    from benchmarks.evidence import epochs_to
    from distsearch.simulate import table as tables
    from distsearch.simulate.loop import simulate
    from distsearch.spec.model import JobSpec

    path = TABLES / f"{Path(job).stem}.parquet"
    if not path.exists():
        return {}
    table = tables.load(str(path))
    spent, finals = [], []
    for seed in range(seeds):
        raw = _raw(job, seed, trials, epochs, worker_epochs)
        asha = {**raw["asha"], "enabled": True, "variant": search[1]}
        d = {**table.job, "seed": seed, "search": {"algorithm": search[0]}, "asha": asha, "budget": raw["budget"]}
        sim = simulate(table, JobSpec.model_validate(d), SLOTS)
        trace = best_so_far([r[raw["metric"]] for r in sim.epoch_rows if r.get(raw["metric"]) is not None], mode)
        spent.append(epochs_to(trace, target, mode))
        finals.append(float(trace[-1]))
    return {"sim worker-epochs to target": float(np.median(spent)), "sim final best": float(np.median(finals))}


def summary(df: pd.DataFrame, trials: int | None, epochs: int | None, worker_epochs: int | None = None) -> pd.DataFrame:
    from benchmarks.evidence import epochs_to  # here, not at the top: the methods' interpreters import this module

    out = []
    for job, runs in df.groupby("job", sort=False):
        raw = _raw(f"jobs/{job}.yaml", 0, trials, epochs)
        mode = raw["mode"]
        finals = runs[runs.method == BASELINE]["best_val"].to_numpy()
        target = float(np.quantile(finals, 0.5, method="lower" if mode == "max" else "higher"))
        spent, to_s = {}, {}
        for m, r in runs.groupby("method", sort=False):
            hits = [epochs_to(best_so_far(v, mode), target, mode) for v in r["values"]]
            spent[m] = np.array(hits)
            to_s[m] = np.array([at[int(h) - 1] if np.isfinite(h) else np.inf for h, at in zip(hits, r["at_s"], strict=True)])
        base = float(np.median(spent[BASELINE]))
        for m, r in runs.groupby("method", sort=False):
            row = {
                "job": job,
                "method": m,
                "target": target,
                "worker-epochs to target": float(np.median(spent[m])),
                "ratio": float(np.median(spent[m])) / base if np.isfinite(np.median(spent[m])) else np.inf,
                "reached": float(np.isfinite(spent[m]).mean()),
                "s to target": float(np.median(to_s[m])),
                "worker-epochs": float(r["values"].map(len).median()),
                "command s": float(r["command_s"].median()),
                "final best": float(r["best_val"].median()),
                "test": float(r["test"].median()),
            }
            if m in SEARCH:
                row.update(predicted(f"jobs/{job}.yaml", SEARCH[m], int(r["seed"].max()) + 1, trials, epochs, target, mode, worker_epochs))
            out.append(row)
    return pd.DataFrame(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs", nargs="*", help="job files (default: jobs/quickstart.yaml jobs/wine.yaml); 'smoke' for the smallest run")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(CHOICES)}")
    ap.add_argument("--out", default="versus.parquet")
    ap.add_argument(
        "--worker-epochs",
        type=int,
        default=None,
        help="give every method this budget of worker-epochs instead of the job's trials (each ends its sweep once spent)",
    )
    args = ap.parse_args()
    trials = epochs = None
    if args.jobs == ["smoke"]:
        args.jobs, args.seeds, trials, epochs = ["jobs/quickstart.yaml"], 1, 4, 3
        args.worker_epochs = args.worker_epochs or 6  # the budget's path too: less than 4 trials of 3 epochs
        args.out = str(Path(tempfile.gettempdir(), "versus-smoke.parquet"))
    jobs = args.jobs or list(JOBS)
    methods = [m for m in args.methods.split(",") if m]
    if bad := [m for m in methods if m not in CHOICES]:
        ap.error(f"--methods: got {', '.join(bad)}; fix: use {', '.join(CHOICES)}")
    if BASELINE not in methods:
        ap.error(f"--methods: the target comes from {BASELINE}; fix: include it")
    print(machine_line(), flush=True)
    budget = f"{args.worker_epochs} worker-epochs each" if args.worker_epochs else "the jobs' trials and epochs"
    print(f"jobs {', '.join(jobs)}; seeds 0..{args.seeds - 1}; {SLOTS} trials at a time; {budget}; methods interleaved per seed", flush=True)
    rows, failed = [], []
    try:
        for job in jobs:
            for seed in range(args.seeds):
                for method in methods:
                    try:
                        rows.append(one(method, job, seed, trials, epochs, args.worker_epochs))
                    except RuntimeError as e:  # one failure loses neither the other rows nor later seeds
                        failed.append(f"{method} {job} seed {seed}")
                        print(f"FAILED: {str(e)[-1500:]}", flush=True)
                        continue
                    r = rows[-1]
                    print(
                        json.dumps(
                            {k: r[k] for k in ("job", "method", "seed", "command_s", "trials", "best_val", "test")}
                            | {"worker_epochs": len(r["values"])}
                        ),
                        flush=True,
                    )
    finally:  # what was measured before a failing row is kept
        if rows:
            df = pd.DataFrame(rows)
            df.to_parquet(args.out, index=False)
            print("\n" + markdown(summary(df, trials, epochs, args.worker_epochs)))
            print(f"\nfigures: {args.out}")
    if failed:
        print(f"failed rows: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_recorded("versus", main, "versus.parquet"))
