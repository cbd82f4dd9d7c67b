"""End-to-end sweeps on a real embedded Ray (2 CPUs, no dashboard) with 2 gloo workers per trial."""

import json
import time
from pathlib import Path

import pytest
import ray

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.spec.model import parse_job
from distsearch.sweep import planning

from ..conftest import tiny_job
from .conftest import assert_nothing_left, check_report_in_browser, check_run_files, max_overlap

pytestmark = pytest.mark.integration


KEPT, SPARES, NEW = "kept", "spares", "new"


@pytest.mark.parametrize("mode", [KEPT, SPARES, NEW])
def test_trial_workers_start_in_kept_or_spare_processes(embedded_ray, tmp_path, mode):
    """Where each trial's rank 0 runs, 2 trials one at a time, whose 2 workers of 1 CPU take both
    CPUs. kept (the defaults): the first trial in a spare process that the driver had started
    before it (harness.spare_worker_keep_alive_s unset), the later ones in that very process,
    kept by the trial actor with its whole worker group (harness.trial_processes: kept_worker_group).
    spares (groups not kept, spares for 600 s): every trial in a process that was up before it
    started, a spare. new (neither): Ray starts a new process for every worker, after its trial
    started. The kept case runs first in the module, so no spare of an earlier run is left."""
    harness = {
        KEPT: {},
        SPARES: {"spare_worker_keep_alive_s": 600.0, "trial_processes": "reused_actor"},
        NEW: {"spare_worker_keep_alive_s": 0.0, "trial_processes": "reused_actor"},
    }[mode]
    spec = parse_job(
        tiny_job(tmp_path, budget={"num_trials": 2, "max_epochs": 2}, asha={"enabled": False}, scaling={"cpus_per_worker": 1}, harness=harness)
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    trials, epochs = run["trials"].sort_values(C.STARTED_AT).set_index(C.TRIAL_ID), run["epochs"]
    assert result.status_counts[C.STATUS_ERROR] == 0 and max_overlap(run["trials"]) == 1
    process_started = epochs[epochs[C.EPOCH] == 1].set_index(C.TRIAL_ID)[C.WORKER_PROCESS_STARTED_AT]
    lead_s = [round(trials.loc[t, C.STARTED_AT].timestamp() - process_started[t], 2) for t in trials.index]
    same_process = [abs(process_started[t] - process_started[trials.index[0]]) < 0.05 for t in trials.index]
    if mode == KEPT:
        assert all(s > 0 for s in lead_s) and all(same_process), (lead_s, same_process)
        assert set(epochs[C.PLACEMENT_GROUP_ID]) == {epochs[C.PLACEMENT_GROUP_ID].iloc[0]}  # one group served both
    elif mode == SPARES:
        assert all(s > 0 for s in lead_s) and not any(same_process[1:]), (lead_s, same_process)
    else:
        assert all(s < 0 for s in lead_s), lead_s
    assert run["run"]["leaks"] == {"placement_groups_swept_at_end": [], "train_actors_alive_at_end": [], "unreleased_by_trial": {}}
    assert trials[C.RELEASE_SECONDS].notna().all()
    assert_nothing_left()


def test_aggressive_asha_sweep_of_12_trials_leaks_nothing(embedded_ray, tmp_path):
    # 12 trials, 2 at a time: each trial's group is made and ended while another trains. The
    # opt-in soak (tests/integration/test_soak.py) runs 100.
    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 12, "max_epochs": 3}, asha={"grace_period_epochs": 1, "reduction_factor": 3}))
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec)
    trials, epochs = run["trials"], run["epochs"]
    assert result.status_counts[C.STATUS_ERROR] == 0
    stopped = trials[trials[C.STATUS] == C.STATUS_STOPPED]
    assert len(stopped) >= spec.budget.num_trials // 3  # reduction factor 3 at rung 1 stops most trials
    # every finished trial's worker group was released, each within 10 s of the trial ending
    assert trials[C.RELEASE_SECONDS].notna().all()
    assert trials[C.RELEASE_SECONDS].max() < 10
    assert max_overlap(trials) <= 2  # two trials of 2 x 0.5 CPU on 2 CPUs, never more
    assert set(epochs[C.WORLD_SIZE]) == {2}
    assert run["run"]["leaks"] == {"placement_groups_swept_at_end": [], "train_actors_alive_at_end": [], "unreleased_by_trial": {}}
    assert run["best"]["test"]["test_accuracy"] > 0.5
    # TensorBoard: one event file per trial, holding that trial's per-epoch validation curve
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted(Path(result.run_dir, C.TUNE_DIR).glob("*/events.out.tfevents.*"))
    assert len(event_files) == spec.budget.num_trials
    longest = trials[C.EPOCHS_COMPLETED].max()
    curves = []
    for f in event_files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        curves.append(len(acc.Scalars("ray/tune/val_accuracy")))
    assert max(curves) == longest and min(curves) >= 1
    # ... and the hparams view: every trial's flat parameters, conditional ones included
    from tensorboard.plugins.hparams import plugin_data_pb2

    for f in event_files[:3]:
        acc = EventAccumulator(str(f))
        acc.Reload()
        starts = [plugin_data_pb2.HParamsPluginData.FromString(raw) for raw in acc.PluginTagToContent("hparams").values()]
        hp = next(p.session_start_info.hparams for p in starts if p.HasField("session_start_info"))
        assert {"model", "model.depth", "model.width", "lr", "optimizer"} <= set(hp)
    # keep-N: Ray Train keeps the num_to_keep best checkpoints by the metric, plus the latest.
    # Workers may finish an epoch or two past ASHA's stop before the kill lands (reports reach
    # Tune asynchronously), so a checkpoint can be newer than the last epoch Tune recorded.
    for trial_dir in Path(result.run_dir, C.TRAIN_DIR).iterdir():
        kept = [json.loads(Path(d, C.CHECKPOINT_META_FILE).read_text()) for d in trial_dir.glob("checkpoint_2*")]
        mine = epochs[epochs[C.TRIAL_ID] == trial_dir.name]
        assert 1 <= len(kept) <= spec.checkpointing.num_to_keep + 1
        assert max(m[C.EPOCH] for m in kept) >= mine[C.EPOCH].max()  # the latest survives
        assert max(m[spec.metric] for m in kept) >= mine[spec.metric].max() - 1e-9  # so does the best
    assert Path(run["best"][C.CHECKPOINT_PATH], C.CHECKPOINT_FILE).exists()
    # lean checkpoints (keep_after_sweep: selected): model files stay only where the selected models came from
    selected = {run["best"][C.CHECKPOINT_PATH]} | {m[C.CHECKPOINT_PATH] for m in (run["ensemble"] or {}).get("members", [])}
    models = {str(p.parent) for p in Path(result.run_dir, C.TRAIN_DIR).glob(f"*/checkpoint_2*/{C.CHECKPOINT_FILE}")}
    assert models == selected and run["run"]["checkpoints"]["model_files_after"] == len(selected)
    assert run["run"]["checkpoints"]["bytes_after"] < run["run"]["checkpoints"]["bytes_before"] / 3
    # the columns written are the columns docs/results.md documents
    from ..unit.test_schema_doc import _documented

    documented = _documented("`epochs.parquet` columns:")
    per_metric = {c for c in epochs.columns if c.startswith(("train_", "val_"))}  # documented as train_<metric>, val_<metric>
    assert per_metric and set(epochs.columns) - per_metric <= documented and {"train_<metric>", "val_<metric>"} <= documented
    assert_nothing_left()
    # the report of this real sweep: report.html and every figure load in headless Chromium
    from distsearch.cli import main as cli
    from distsearch.results.figures import FIGURES

    assert cli(["report", result.run_dir, "--out", str(tmp_path / "report")]) == 0
    images = check_report_in_browser(tmp_path / "report" / "report.html", tmp_path)
    assert {i["src"] for i in images} == set(FIGURES)
    assert all(i["ok"] and i["w"] > 300 and i["h"] > 200 for i in images), images


TRIAL_ACTOR_CLASS = "ImplicitFunc"  # Tune's actor class for a function trainable; GCS may qualify it ("wrap_function.<locals>.")


def _actor_ids_by_class(cls: str) -> set[str]:
    """Ids of every actor of this class the job has had, dead or alive (GCS keeps the dead)."""
    from ray._private import state

    job = ray.get_runtime_context().get_job_id()
    return {aid for aid, a in state.actors().items() if a.get("ActorClassName", "").split(".")[-1] == cls and a.get("JobID") == job}


@pytest.mark.parametrize("processes", ["ray"])
def test_train_controller_as_its_own_actor_on_rays_own_path(embedded_ray, tmp_path, processes):
    """harness.trial_processes: ray is Ray's own path, one TrainController actor and one
    report-queue actor per trial (the other values run the controller inside the trial's actor:
    ``test_trial_actors_are_reused_and_end_the_stopped_trials_groups`` counts none there). Every
    trial trains and is recorded, each group is released, and nothing is left."""
    before = {c: _actor_ids_by_class(c) for c in ("TrainController", "_QueueActor")}
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 2, "max_epochs": 3},  # both at once: one round of controller, queue and worker starts
            asha={"grace_period_epochs": 1, "reduction_factor": 3},
            harness={"trial_processes": processes},
        )
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    trials = run["trials"]
    assert result.status_counts[C.STATUS_ERROR] == 0
    assert (trials[C.EPOCHS_COMPLETED] >= 1).all() and trials[C.RELEASE_SECONDS].notna().all()
    made = {c: len(_actor_ids_by_class(c) - ids) for c, ids in before.items()}
    n = 0 if processes != "ray" else spec.budget.num_trials
    assert made == {"TrainController": n, "_QueueActor": n}
    assert run["run"]["leaks"] == {"placement_groups_swept_at_end": [], "train_actors_alive_at_end": [], "unreleased_by_trial": {}}
    assert_nothing_left()


@pytest.mark.parametrize("processes", ["kept_worker_group", "controller_in_trial", "trial_actor"])
def test_trial_actors_are_reused_and_end_the_stopped_trials_groups(embedded_ray, tmp_path, processes):
    """harness.trial_processes: kept_worker_group (the default for DDP): Tune runs the next trial in the
    actor of one that ended, and that actor first stops the old trial's workers itself and keeps
    the group for the next trial, so a trial ASHA stopped does not train on in the background.
    controller_in_trial: one actor and one worker group per trial, as Ray does by default.
    trial_actor (the default for one worker): the reused actor trains each trial itself, with no
    Train actor at all, and a stopped trial's training thread ends at its next batch.
    Every way, every trial is recorded, each group is released, and nothing is left."""
    reuse = processes in ("kept_worker_group", "trial_actor")
    lone = processes == "trial_actor"
    before = _actor_ids_by_class(TRIAL_ACTOR_CLASS)
    controllers_before = {c: _actor_ids_by_class(c) for c in ("TrainController", "_QueueActor", "RayTrainWorker")}
    # A stopped trial left running would get far past its rung: it would train on for the rest of
    # the sweep, tens of epochs, where a stop takes effect within one or two. Rungs at 1, 3 and 9
    # epochs; none at 27, so a stopped trial's last few epochs stay below max_epochs.
    max_epochs = 24
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 6, "max_epochs": max_epochs},
            space={**tiny_job(tmp_path)["space"], "batch_size": 32},
            asha={"grace_period_epochs": 1, "reduction_factor": 3},
            harness={"trial_processes": processes},
            **({"scaling": {"num_workers": 1, "cpus_per_worker": 1}} if lone else {}),
        )
    )
    assert spec.harness.reuses_trial_actors is reuse
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec)
    trials = run["trials"]
    assert result.status_counts[C.STATUS_ERROR] == 0
    assert (trials[C.EPOCHS_COMPLETED] >= 1).all() and trials[C.RELEASE_SECONDS].notna().all()
    assert trials[C.RELEASE_SECONDS].max() < spec.harness.release_timeout_s
    stopped = trials[trials[C.STATUS] == C.STATUS_STOPPED]
    assert len(stopped) >= 2
    for _, t in stopped.iterrows():
        # the latest checkpoint is always kept: how far the training got before it ended
        latest = max(
            json.loads(p.read_text())[C.EPOCH]
            for p in Path(result.run_dir, C.TRAIN_DIR, t[C.TRIAL_ID]).glob(f"checkpoint_*/{C.CHECKPOINT_META_FILE}")
        )
        assert latest <= t[C.EPOCHS_COMPLETED] + 10 and latest < max_epochs, (t[C.TRIAL_ID], t[C.EPOCHS_COMPLETED], latest)
    made = len(_actor_ids_by_class(TRIAL_ACTOR_CLASS) - before)
    groups = run["epochs"][C.PLACEMENT_GROUP_ID].nunique()
    if lone:
        assert 1 <= made < spec.budget.num_trials, made
        assert set(run["epochs"][C.PLACEMENT_GROUP_ID]) == {""}  # Tune's own group only, which Tune ends
    elif reuse:
        assert 1 <= made < spec.budget.num_trials, made
        # kept worker groups: each actor kept one group for all its trials,
        # the stopped ones' included (their epochs are far shorter than the settle wait)
        assert groups == made, (groups, made)
    else:
        assert made == spec.budget.num_trials and groups == spec.budget.num_trials
    # Ray Train's controller runs inside each trial's actor: no controller or report-queue actor; a
    # lone trial in its actor makes no Train worker either
    made_train = {c: len(_actor_ids_by_class(c) - ids) for c, ids in controllers_before.items()}
    assert made_train["TrainController"] == made_train["_QueueActor"] == 0, made_train
    assert (made_train["RayTrainWorker"] == 0) is lone, made_train
    assert run["run"]["leaks"] == {"placement_groups_swept_at_end": [], "train_actors_alive_at_end": [], "unreleased_by_trial": {}}
    assert_nothing_left()


def test_failing_trials_are_recorded_and_the_sweep_goes_on(embedded_ray, tmp_path):
    raw = tiny_job(tmp_path, budget={"num_trials": 4, "max_epochs": 2})
    raw["space"]["lr"] = {"choice": [0.05, 1.0e30]}  # 1e30 with SGD overflows to inf/NaN in epoch 1
    raw["space"]["optimizer"] = "sgd"
    spec = parse_job(raw)
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    trials = run["trials"]
    bad = trials[trials["hp_lr"] > 1]
    good = trials[trials["hp_lr"] < 1]
    assert len(bad) >= 1 and len(good) >= 1
    assert (bad[C.STATUS] == C.STATUS_ERROR).all()
    assert bad[C.ERROR].str.contains("NonFiniteLossError").all() and bad[C.ERROR].str.contains("lower lr").all()
    assert (good[C.STATUS] != C.STATUS_ERROR).all()
    assert_nothing_left()


def test_worker_group_that_cannot_start_fails_its_trial_not_forever(embedded_ray, tmp_path):
    # Something else holds 1.5 of the 2 CPUs, so a trial's 2 x 0.5-CPU workers can never be
    # placed. The trial must fail after its bounded attempts, with a clear message.
    blocker = ray.util.placement_group([{"CPU": 1.5}])
    ray.get(blocker.ready())
    try:
        spec = parse_job(
            tiny_job(
                tmp_path,
                budget={"num_trials": 1, "max_epochs": 1},
                max_concurrent_trials=1,
                harness={"worker_start_timeout_s": 3, "worker_start_attempts": 2},
            )
        )
        t0 = time.monotonic()
        result = run_job(spec)
        took = time.monotonic() - t0
    finally:
        ray.util.remove_placement_group(blocker)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    row = run["trials"].iloc[0]
    assert row[C.STATUS] == C.STATUS_ERROR
    assert "worker group startup timed out" in row[C.ERROR]
    assert took < 90
    assert_nothing_left()


def test_infeasible_job_is_refused_before_any_trial(embedded_ray, tmp_path):
    spec = parse_job(tiny_job(tmp_path, scaling={"num_workers": 1, "use_gpu": True, "gpus_per_worker": 4}))
    with pytest.raises(planning.InfeasibleJobError, match="scaling.gpus_per_worker"):
        run_job(spec)
