"""Peers: one small question asked several ways side by side in one run (distsearch, Optuna alone, Ray's pattern, Tune alone).

The question: the quickstart's digits MLP space (depth 1-3, width 64/128/256, relu/gelu/tanh,
dropout 0-0.3, adam/adamw/sgd, lr 3e-4..3e-2 log, batch 32/64), a budget of ``--trials``
trials of ``--epochs`` epochs, TPE with successive halving (grace 2 epochs, reduction factor 3),
two trials at a time (the cores), one process per trial:

- ``distsearch``: ``distsearch run`` on that job with TPE, as the other two (random search is the
  default), and its other defaults (ASHA; one worker per trial, so ``harness.trial_processes:
  auto`` trains each trial in its Tune actor), the ensemble off;
- ``distsearch_group``: the same job with ``harness.trial_processes: kept_worker_group``, each
  trial's one worker in a Ray Train worker group that its actor keeps: what training in the trial
  actor saves, measured beside it;
- ``optuna``: Optuna alone: ``TPESampler`` + ``SuccessiveHalvingPruner``, ``n_jobs`` = the cores,
  no Ray; the best epoch's weights kept in memory and scored on test once at the end;
- ``ray``: Ray's documented Train V2 + Tune pattern: a Tune function trainable that builds a
  ``TorchTrainer`` with ``TuneReportCallback``, ``OptunaSearch`` and ``ASHAScheduler``, a
  checkpoint reported every epoch; the best checkpoint scored on test;
- ``tune``: Tune alone, one process per trial: the same search and scheduler over a function
  trainable that trains in its own trial actor (no Ray Train), a checkpoint per epoch through
  ``tune.report``, actors reused; what a harness without a separate Train worker could reach.

All of them train with the same loop (``distsearch.train.loop.train``) on the same splits, one
torch thread per trial, so what differs is the harness. Each method and seed runs in a fresh
interpreter. Per run: the command's wall seconds (process start to exit); the sweep's (first
trial start to last trial end); efficiency (the epochs' own seconds / (sweep seconds x 2
slots)); harness ms per epoch (within a trial, the time between its first and last report that
its epochs do not explain, per report); the gap between a slot's trials (a trial's first epoch
start minus the end of the trial before it in that slot); a trial's setup (its start to its
first epoch's start), for the first trial of each slot and the median later one; the best
validation accuracy and its test accuracy. Once a seed, ``import torch._dynamo`` is timed alone in
a fresh interpreter: torch.optim imports it at a process's first optimizer, inside a first trial.

    python benchmarks/peers.py [--seeds 5] [--trials 16] [--epochs 20] [--out peers.parquet]
    python benchmarks/peers.py smoke     # 1 seed, 4 trials of 3 epochs (it starts Ray four times: not in CI)

Targets (issue 34), ratios of medians in this run: distsearch's command within 2x of Optuna
alone's; efficiency >= 0.7; harness <= 20 ms per epoch; a slot's gap <= 0.1 s. It prints each
ratio and whether it is met (the record keeps the verdict). A row that fails is printed and
counted, the others go on, and the exit status is 1.
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
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, ray_pattern, report_with_weights, run_recorded  # noqa: E402

METHODS = ("distsearch", "distsearch_group", "optuna", "ray", "tune")
SLOTS = 2
GRACE_EPOCHS, REDUCTION = 2, 3
SPACE = {
    "model": {"choice": {"mlp": {"depth": {"randint": [1, 4]}, "width": {"choice": [64, 128, 256]}}}},
    "activation": {"choice": ["relu", "gelu", "tanh"]},
    "dropout": {"uniform": [0.0, 0.3]},
    "optimizer": {"choice": ["adam", "adamw", "sgd"]},
    "lr": {"loguniform": [3.0e-4, 3.0e-2]},
    "batch_size": {"choice": [32, 64]},
}


def _job(seed: int, trials: int, epochs: int, storage: str, trial_processes: str = "auto") -> dict:
    return {
        "name": "peers",
        "task": "digits",
        "seed": seed,
        "metric": "val_accuracy",
        "mode": "max",
        "space": SPACE,
        "search": {"algorithm": "tpe"},
        "budget": {"num_trials": trials, "max_epochs": epochs},
        "asha": {"grace_period_epochs": GRACE_EPOCHS, "reduction_factor": REDUCTION},
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
        "max_concurrent_trials": SLOTS,
        "ensemble": {"enabled": False},
        "harness": {"trial_processes": trial_processes},
        "storage": storage,
    }


def _suggest(trial) -> dict:
    """Optuna's define-by-run form of SPACE, with distsearch's flat names."""
    return {
        "model": "mlp",
        "model.depth": trial.suggest_int("model.depth", 1, 3),
        "model.width": trial.suggest_categorical("model.width", [64, 128, 256]),
        "activation": trial.suggest_categorical("activation", ["relu", "gelu", "tanh"]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd"]),
        "lr": trial.suggest_float("lr", 3e-4, 3e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
    }


def _test_accuracy(task, splits, params: dict, state: dict) -> float:
    import torch

    from distsearch.train.loop import evaluate

    model = task.build_model(params, splits)
    model.load_state_dict(state)
    return float(task.metrics_from_sums(evaluate(task, model, splits.test, torch.device("cpu")))["accuracy"])


# ---- each method, in its own interpreter: trials as [{start, end, epochs: [[arrival, seconds]]}] ----
def run_distsearch_group(seed: int, trials: int, epochs: int) -> dict:
    return run_distsearch(seed, trials, epochs, trial_processes="kept_worker_group")


def run_distsearch(seed: int, trials: int, epochs: int, trial_processes: str = "auto") -> dict:
    from benchmarks._common import run_cli
    from distsearch import constants as C

    with tempfile.TemporaryDirectory() as storage:
        run, command_s = run_cli(_job(seed, trials, epochs, storage, trial_processes), Path(storage), None)
        # epochs.parquet's timestamps are when the driver received each report, and Tune hands the
        # driver reports in batches; the worker's own report times are in each trial's latest
        # checkpoint's history (its JSON stays after the sweep)
        reported = {}
        for f in Path(storage, "peers").glob(f"*/{C.TRAIN_DIR}/*/*/{C.CHECKPOINT_HISTORY_FILE}"):
            history = json.loads(f.read_text())
            if len(history) > len(reported.get(f.parent.parent.name, [])):
                reported[f.parent.parent.name] = history
    ep = run["epochs"]
    out = []
    for _, t in run["trials"].iterrows():
        rows = ep[ep[C.TRIAL_ID] == t[C.TRIAL_ID]].sort_values(C.EPOCH)
        at = {int(h[C.EPOCH]): float(h[C.TIMESTAMP]) for h in reported.get(t[C.TRIAL_ID], [])}
        start, end = (pd.Timestamp(t[c]).timestamp() for c in (C.STARTED_AT, C.ENDED_AT))
        out.append(
            {"start": start, "end": end, "epochs": [[at[int(e)], float(s)] for e, s in zip(rows[C.EPOCH], rows[C.EPOCH_SECONDS], strict=True)]}
        )
    best = run["best"]
    # the user's command is ``distsearch run``: its wall seconds, not this interpreter's
    return {"trials": out, "best_val": best["val_metric"], "test": best["test"]["test_accuracy"], "command_s": command_s}


def run_optuna(seed: int, trials: int, epochs: int) -> dict:
    import threading

    import optuna
    import torch

    from distsearch.tasks import make_task
    from distsearch.train.loop import train

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = make_task("digits", {})
    splits = task.splits(seed)
    lock, out, best = threading.Lock(), [], {"val": -1.0}

    def objective(trial):
        params = _suggest(trial)
        rec = {"start": time.time(), "epochs": []}
        value = 0.0

        def report(metrics, state):
            nonlocal value
            value = metrics["val_accuracy"]
            rec["epochs"].append([time.time(), metrics["epoch_seconds"]])
            with lock:
                if value > best["val"]:
                    best.update(val=value, params=params, state={k: v.clone() for k, v in state["model"].items()})
            trial.report(value, metrics["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            train(task, params, report, max_epochs=epochs, seed=seed, splits=splits.without_test())
        finally:
            rec["end"] = time.time()
            with lock:
                out.append(rec)
        return value

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=GRACE_EPOCHS, reduction_factor=REDUCTION)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=trials, n_jobs=SLOTS)
    return {"trials": out, "best_val": best["val"], "test": _test_accuracy(task, splits, best["params"], best["state"])}


def _tune_question(seed: int, epochs: int) -> tuple[dict, Any, Any]:
    """SPACE as a Tune param space, with TPE (``OptunaSearch``) and ASHA as the other methods have them."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    space = {
        "model": "mlp",
        "model.depth": tune.randint(1, 4),
        "model.width": tune.choice([64, 128, 256]),
        "activation": tune.choice(["relu", "gelu", "tanh"]),
        "dropout": tune.uniform(0.0, 0.3),
        "optimizer": tune.choice(["adam", "adamw", "sgd"]),
        "lr": tune.loguniform(3e-4, 3e-2),
        "batch_size": tune.choice([32, 64]),
    }
    scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=GRACE_EPOCHS, reduction_factor=REDUCTION)
    return space, OptunaSearch(seed=seed), scheduler


def _clocked() -> tuple[dict[str, dict], Any]:
    """A Tune callback that times each trial's start, end and epochs, and what it fills: an
    epoch's time is its report's own ``reported_at`` when the result has one, else its arrival."""
    from ray import tune

    clock: dict[str, dict] = {}

    class Clock(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            clock[trial.trial_id] = {"start": time.time(), "epochs": []}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            clock[trial.trial_id]["epochs"].append([result.get("reported_at", time.time()), result["epoch_seconds"]])

        def on_trial_complete(self, iteration, trials, trial, **info):
            clock[trial.trial_id]["end"] = time.time()

        on_trial_error = on_trial_complete

    return clock, Clock()


def _clock_trials(clock: dict[str, dict]) -> list[dict]:
    for rec in clock.values():
        rec.setdefault("end", rec["epochs"][-1][0] if rec["epochs"] else rec["start"])
    return list(clock.values())


def run_ray(seed: int, trials: int, epochs: int) -> dict:
    from distsearch.tasks import make_task

    task = make_task("digits", {})
    splits = task.splits(seed)
    space, search_alg, scheduler = _tune_question(seed, epochs)
    clock, callback = _clocked()
    params, val, state = ray_pattern(
        task,
        splits,
        dict,
        search_alg=search_alg,
        scheduler=scheduler,
        param_space=space,
        num_samples=trials,
        slots=SLOTS,
        max_epochs=epochs,
        seed=seed,
        metric="val_accuracy",
        mode="max",
        callbacks=[callback],
    )
    return {"trials": _clock_trials(clock), "best_val": val, "test": _test_accuracy(task, splits, params, state)}


def run_tune(seed: int, trials: int, epochs: int) -> dict:
    """Tune alone, one process per trial: a function trainable that trains in its own trial actor
    (no Ray Train), a checkpoint per epoch through ``tune.report``, actors reused."""
    import ray
    import torch
    from ray import tune

    from distsearch.tasks import make_task
    from distsearch.train.loop import train

    task = make_task("digits", {})
    splits = task.splits(seed)
    space, search_alg, scheduler = _tune_question(seed, epochs)
    clock, callback = _clocked()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        data = ray.put(splits.without_test())

        def trainable(config):
            torch.set_num_threads(1)

            report = report_with_weights(
                lambda metrics, d: tune.report({**metrics, "reported_at": time.time()}, checkpoint=tune.Checkpoint.from_directory(d))
            )
            train(task, dict(config), report, max_epochs=epochs, seed=seed, splits=ray.get(data))

        with tempfile.TemporaryDirectory() as storage:
            grid = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space=space,
                tune_config=tune.TuneConfig(
                    metric="val_accuracy",
                    mode="max",
                    search_alg=search_alg,
                    scheduler=scheduler,
                    num_samples=trials,
                    max_concurrent_trials=SLOTS,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(storage_path=storage, callbacks=[callback], verbose=0),
            ).fit()
            best = grid.get_best_result(scope="all")
            checkpoint, metrics = max(best.best_checkpoints, key=lambda cm: cm[1]["val_accuracy"])
            with checkpoint.as_directory() as d:
                state = torch.load(os.path.join(d, "model.pt"), weights_only=True)
            params = dict(best.config)
    finally:
        ray.shutdown()
    return {"trials": _clock_trials(clock), "best_val": float(metrics["val_accuracy"]), "test": _test_accuracy(task, splits, params, state)}


# ---- the figures of one run, and the table --------------------------------------------------
def figures(method: str, seed: int, command_s: float, res: dict) -> dict:
    trials = sorted((t for t in res["trials"] if t["epochs"]), key=lambda t: t["start"])
    sweep = max(t["end"] for t in trials) - min(t["start"] for t in trials)
    epoch_s = sum(s for t in trials for _, s in t["epochs"])
    # within a trial: the time between its first and last report that its epochs do not explain
    spans = [(t["epochs"][-1][0] - t["epochs"][0][0] - sum(s for _, s in t["epochs"][1:]), len(t["epochs"]) - 1) for t in trials]
    harness = sum(s for s, _ in spans) / max(1, sum(n for _, n in spans))
    # a slot's next trial starts when one ends: pair each trial after the first SLOTS with the
    # latest end before its first epoch began
    gaps, ends = [], sorted(t["end"] for t in trials)
    for t in trials[SLOTS:]:
        first = t["epochs"][0][0] - t["epochs"][0][1]
        before = [e for e in ends if e <= first]
        if before:
            gaps.append(first - before[-1])
    # a trial's setup: its start to its first epoch's start; the first SLOTS trials' setups also
    # hold what each process pays once (torch.optim's first use imports torch._dynamo)
    setups = [t["epochs"][0][0] - t["epochs"][0][1] - t["start"] for t in trials]
    return {
        "method": method,
        "seed": seed,
        "trials": len(trials),
        "epochs": sum(len(t["epochs"]) for t in trials),
        "command_s": command_s,
        "sweep_s": sweep,
        "epoch_s_median": float(pd.Series([s for t in trials for _, s in t["epochs"]]).median()),
        "efficiency": epoch_s / (sweep * SLOTS),
        "harness_ms_per_epoch": 1000 * harness,
        "gap_s": float(pd.Series(gaps).median()) if gaps else float("nan"),
        "first_setup_s": float(pd.Series(setups[:SLOTS]).median()),
        "later_setup_s": float(pd.Series(setups[SLOTS:]).median()) if len(setups) > SLOTS else float("nan"),
        "best_val": res["best_val"],
        "test": res["test"],
    }


def one(method: str, seed: int, trials: int, epochs: int) -> dict:
    """Run one method in a fresh interpreter and return its figures; the command's wall seconds
    count the interpreter's start and imports, as a user's would (distsearch's are those of its
    own ``distsearch run`` process, which the method starts)."""
    code = f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.peers import run_{method}; print('RESULT' + json.dumps(run_{method}({seed}, {trials}, {epochs})))"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0"})
    wall = time.monotonic() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"{method} seed {seed} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(line[len("RESULT") :])
    return figures(method, seed, res.pop("command_s", wall), res)


TARGETS = (  # (figure, what it is compared with, bound, how): issue 34's targets
    ("command_s", "optuna", 2.0, "ratio to Optuna alone <="),
    ("efficiency", None, 0.7, ">="),
    ("harness_ms_per_epoch", None, 20.0, "<="),
    ("gap_s", None, 0.1, "<="),
)


def dynamo_import_s() -> float:
    """Seconds that ``import torch._dynamo`` takes in a fresh interpreter that has imported torch:
    what every process pays at its first optimizer, since torch.optim imports it there."""
    code = "import time, torch; t = time.perf_counter(); import torch._dynamo; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def verdicts(df: pd.DataFrame, dynamo_s: float = float("nan")) -> list[str]:
    med = df.groupby("method").median(numeric_only=True)
    if "distsearch" not in med.index:
        return []
    lines = []
    for figure, other, bound, how in TARGETS:
        value = med.at["distsearch", figure]
        if other is not None and other in med.index:
            value = value / med.at[other, figure]
        met = value <= bound if "<=" in how else value >= bound
        lines.append(f"- distsearch {figure}: {value:.3g} ({how} {bound:g}): {'met' if met else 'missed'}")
    # per run: the slot-seconds outside epochs, and the part of them that the first trials (one a
    # slot) spend before their first epoch beyond what a later trial spends
    d = df[df["method"] == "distsearch"]
    idle = (d["sweep_s"] * SLOTS * (1 - d["efficiency"])).median()
    first_extra = (SLOTS * (d["first_setup_s"] - d["later_setup_s"])).median()
    lines.append(
        f"- distsearch's slot-seconds outside epochs: {idle:.3g} s a sweep, of which {first_extra:.3g} s are its first trials' setup "
        f"beyond a later trial's ({med.at['distsearch', 'first_setup_s']:.3g} s against {med.at['distsearch', 'later_setup_s']:.3g} s a trial); "
        f"`import torch._dynamo` alone takes {dynamo_s:.3g} s in a fresh interpreter with torch imported (median of {len(d)})"
    )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", choices=["smoke"], help="smoke: 1 seed, 4 trials of 3 epochs")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--out", default="peers.parquet")
    args = ap.parse_args()
    if args.mode == "smoke":
        args.seeds, args.trials, args.epochs, args.out = 1, 4, 3, str(Path(tempfile.gettempdir(), "peers-smoke.parquet"))
    methods = [m for m in args.methods.split(",") if m]
    if bad := [m for m in methods if m not in METHODS]:
        ap.error(f"--methods: got {', '.join(bad)}; fix: use {', '.join(METHODS)}")
    print(machine_line(), flush=True)
    print(f"{args.trials} trials of {args.epochs} epochs, {SLOTS} at a time, seeds 0..{args.seeds - 1}; methods interleaved per seed", flush=True)
    rows: list[dict] = []
    failed: list[str] = []
    dynamo: list[float] = []
    try:
        for seed in range(args.seeds):
            dynamo.append(dynamo_import_s())
            for method in methods:
                try:
                    rows.append(one(method, seed, args.trials, args.epochs))
                except RuntimeError as e:  # one method's failure loses neither the others' rows nor its later seeds
                    failed.append(f"{method} seed {seed}")
                    print(f"FAILED: {str(e)[-1500:]}", flush=True)
                    continue
                print(json.dumps(rows[-1]), flush=True)
    finally:  # what was measured before a failing row is kept
        if rows:
            df = pd.DataFrame(rows)
            df.to_parquet(args.out, index=False)
            print("\n" + markdown(df.groupby("method", sort=False).median(numeric_only=True).drop(columns="seed").reset_index()))
            print("\nmedians over seeds; targets (issue 34):\n" + "\n".join(verdicts(df, float(pd.Series(dynamo).median()))))
            print(f"\nfigures: {args.out}")
    if failed:
        print(f"failed rows: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_recorded("peers", main, "peers.parquet"))
