"""Job-spec validation: every shipped job is valid; every bad one names field, value and fix."""

import subprocess
import sys

import pytest
import yaml

from distsearch.spec.model import TRIAL_PROCESSES, Choice, Conditional, RandInt, SpecError, Uniform, load_job, parse_job
from distsearch.validate import check_job

from ..conftest import JOBS, ROOT, load_shipped


@pytest.mark.parametrize("path", sorted(JOBS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_jobs_are_valid(path, request):
    check_job(load_shipped(path, request))


def test_quickstart_parses_every_form():
    spec = load_job(JOBS / "quickstart.yaml")
    assert isinstance(spec.space["model"], Conditional)
    assert set(spec.space["model"].options) == {"mlp", "cnn"}
    assert isinstance(spec.space["model"].options["mlp"]["depth"], RandInt)
    assert spec.space["lr"] == Uniform(kind="loguniform", low=3e-4, high=3e-2)
    assert spec.space["optimizer"] == Choice(values=("adam", "adamw", "sgd"))
    assert spec.budget.num_trials >= 16 and spec.scaling.num_workers == 2


def test_round_trip_through_to_dict():
    spec = load_job(JOBS / "quickstart.yaml")
    assert parse_job(spec.to_dict()) == spec


def _set(raw, dotted, value):
    *head, last = dotted.split(".")
    node = raw
    for k in head:
        node = node.setdefault(k, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


class _Deleted:
    """The field is removed; its repr keeps the test's id the same from run to run."""

    def __repr__(self) -> str:
        return "<deleted>"


_DELETE = _Deleted()

# (field to change, new value, substrings the message must contain: field, value, fix)
BAD = [
    ("budget.num_trials", 0, ["budget.num_trials", "0", "fix: set budget.num_trials to 1 or more"]),
    ("budget.max_epochs", "ten", ["budget.max_epochs", "'ten'", "fix: set budget.max_epochs to a whole number"]),
    ("asha.reduction_factor", 1.5, ["asha.reduction_factor", "1.5", "fix: set asha.reduction_factor to 2"]),
    ("budget.worker_epochs", 1, ["budget.worker_epochs", "got 1", "num_workers: 2", "fix: set it to at least 2"]),
    ("asha.grace_period_epochs", 50, ["asha.grace_period_epochs", "50", "at most 20"]),
    ("asha.bracket", 2, ["asha.bracket", "remove it", "brackets"]),
    ("scaling.cpus_per_worker", -1, ["scaling.cpus_per_worker", "-1", "fix: set scaling.cpus_per_worker to 0.01 or more"]),
    ("scaling.gpus_per_worker", 0.5, ["scaling.gpus_per_worker", "0.5", "use_gpu: true"]),
    ("mode", "maximize", ["mode", "'maximize'", "fix: set mode to 'min' or 'max'"]),
    ("name", "bad name!", ["name", "'bad name!'", "letters, digits"]),
    ("name", "quickstart\n", ["name", "'quickstart\\n'", "letters, digits"]),  # issue 29, case 10: the regex ended at $
    ("name", _DELETE, ["name", "nothing", "add it"]),
    ("space.lr", {"loguniform": [0.1, 0.001]}, ["space.lr", "[0.1, 0.001]", "low must be below high"]),
    ("space.lr", {"loguniform": [0, 0.1]}, ["space.lr", "[0, 0.1]", "0 < low"]),
    ("space.optimizer", {"choice": []}, ["space.optimizer", "[]", "non-empty list"]),
    ("space.dropout", {"gaussian": [0, 1]}, ["space.dropout", "gaussian", "exactly one of the keys"]),
    ("space.model", {"choice": {}}, ["space.model.choice", "{}", "at least one option"]),
    ("space.batch_size", {"qrandint": [16, 64, 0]}, ["space.batch_size", "[16, 64, 0]", "q must be > 0"]),
    ("space.model.choice.mlp.depth", {"randint": [1.5, 3]}, ["space.model.choice.mlp.depth", "[1.5, 3]", "integers"]),
    ("storage", "", ["storage", "''", "local path"]),
    ("max_concurrent_trials", 0, ["max_concurrent_trials", "0", "fix: set max_concurrent_trials to 1 or more"]),
    (
        "harness.trial_processes",
        "driver",
        ["harness.trial_processes", "'driver'", "fix: set harness.trial_processes to 'auto', 'ray', 'controller_in_trial'"],
    ),
]


def _assert_refused(raw, needles):
    """``raw`` is refused with a SpecError whose text holds every needle (field, value, fix)."""
    with pytest.raises(SpecError) as info:
        parse_job(raw)
    text = str(info.value)
    for needle in needles:
        assert needle in text, f"{needle!r} missing from:\n{text}"


def test_trial_processes_is_one_field_whose_values_add_reuse_step_by_step(quickstart_raw):
    """Each value of harness.trial_processes adds one step of reuse, up to a lone worker in the
    trial's actor; the default (auto) is the most that the job's trials allow."""
    expected = {  # (controller in the trial, reused trial actors, kept worker groups, trains in the trial actor)
        "ray": (False, False, False, False),
        "controller_in_trial": (True, False, False, False),
        "reused_actor": (True, True, False, False),
        "kept_worker_group": (True, True, True, False),
        "trial_actor": (False, True, False, True),
    }
    assert set(expected) == set(TRIAL_PROCESSES)
    h = parse_job(quickstart_raw).harness
    assert h.trial_processes == "kept_worker_group" and h.settle_wait_s == h.release_timeout_s / 2
    for value, flags in expected.items():
        _set(quickstart_raw, "harness.trial_processes", value)
        if value == "trial_actor":
            _set(quickstart_raw, "scaling.num_workers", 1)
        h = parse_job(quickstart_raw).harness
        assert (h.controller_in_trial, h.reuses_trial_actors, h.reuses_worker_groups, h.trains_in_trial_actor) == flags, value
        assert parse_job(parse_job(quickstart_raw).to_dict()).harness.trial_processes == value  # round trip keeps the choice


@pytest.mark.parametrize(
    "scaling, harness, resolved",
    [
        ({"num_workers": 2}, {}, "kept_worker_group"),  # DDP: Ray Train's worker group
        ({"num_workers": 1}, {}, "trial_actor"),
        ({"num_workers": 1}, {"trial_processes": "auto"}, "trial_actor"),
        ({"num_workers": 1}, {"max_worker_failures": 1}, "kept_worker_group"),  # a worker Ray Train can restart
        ({"num_workers": 1}, {"trial_processes": "reused_actor"}, "reused_actor"),  # a value set stays
    ],
)
def test_auto_trial_processes_trains_a_lone_worker_in_the_trial_actor(quickstart_raw, scaling, harness, resolved):
    quickstart_raw["scaling"] = {**quickstart_raw.get("scaling", {}), **scaling}
    quickstart_raw["harness"] = harness
    spec = parse_job(quickstart_raw)
    assert spec.harness.trial_processes == resolved
    assert parse_job(spec.to_dict()).harness.trial_processes == resolved  # what run.json holds is what ran


@pytest.mark.parametrize(
    "scaling, harness, needles",
    [
        ({"num_workers": 2}, {"trial_processes": "trial_actor"}, ["scaling.num_workers", "got 2", "fix: set harness.trial_processes: auto"]),
        (
            {"num_workers": 1},
            {"trial_processes": "trial_actor", "max_worker_failures": 2},
            ["harness.max_worker_failures", "got 2", "max_worker_failures: 0"],
        ),
    ],
)
def test_trial_actor_refuses_what_it_cannot_do(quickstart_raw, scaling, harness, needles):
    quickstart_raw["scaling"] = {**quickstart_raw.get("scaling", {}), **scaling}
    quickstart_raw["harness"] = harness
    _assert_refused(quickstart_raw, needles)


OLD_KEYS = [  # the booleans trial_processes replaced -> the value they meant
    ({"train_controller": "actor"}, "ray"),
    ({"train_controller": "trial", "reuse_trial_actors": False}, "controller_in_trial"),
    ({"reuse_worker_groups": False}, "reused_actor"),
    ({"reuse_trial_actors": True}, "kept_worker_group"),
]


@pytest.mark.parametrize("old,value", OLD_KEYS, ids=[str(o) for o, _ in OLD_KEYS])
def test_old_harness_keys_name_the_new_field_and_value(quickstart_raw, old, value):
    quickstart_raw["harness"] = dict(old)
    _assert_refused(quickstart_raw, [f"harness.{k}" for k in old] + [f"fix: remove them and write harness.trial_processes: {value}"])


@pytest.mark.parametrize("field,value,needles", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_spec_names_field_value_and_fix(quickstart_raw, field, value, needles):
    _set(quickstart_raw, field, value)
    _assert_refused(quickstart_raw, needles)


# Task-level problems: caught by check_job, still before Ray.
TASK_BAD = [
    ("task", "imagenet", ["task", "'imagenet'", "digits"]),
    ("metric", "val_f1", ["metric", "'val_f1'", "val_accuracy"]),
    ("mode", "min", ["mode", "'min'", "set mode: max"]),
    ("space.momentum_typo", {"uniform": [0.5, 0.9]}, ["space.momentum_typo", "does not read", "momentum"]),
    ("task_options.val_fraction", 0.9, ["task_options.val_fraction", "0.9", "between 0.05 and 0.4"]),
]


@pytest.mark.parametrize("field,value,needles", TASK_BAD, ids=[t[0] for t in TASK_BAD])
def test_task_checks_name_field_value_and_fix(quickstart_raw, field, value, needles):
    _set(quickstart_raw, field, value)
    with pytest.raises(SpecError) as info:
        check_job(parse_job(quickstart_raw))
    for needle in needles:
        assert needle in str(info.value)


def test_every_problem_is_reported_at_once(quickstart_raw):
    _set(quickstart_raw, "budget.num_trials", -3)
    _set(quickstart_raw, "scaling.num_workers", 0)
    with pytest.raises(SpecError) as info:
        parse_job(quickstart_raw)
    assert len(info.value.problems) == 2


def test_cli_validate_exits_nonzero_without_starting_ray(tmp_path, quickstart_raw):
    _set(quickstart_raw, "asha.reduction_factor", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(quickstart_raw))
    proc = subprocess.run([sys.executable, "-m", "distsearch", "validate", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "asha.reduction_factor" in proc.stderr and "Traceback" not in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "distsearch", "validate", str(JOBS / "quickstart.yaml")], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert ok.returncode == 0, ok.stderr


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_job(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_job(broken)


@pytest.mark.parametrize("kind", ["dangling-link", "file"])
def test_a_local_storage_that_cannot_hold_runs_is_refused_before_ray(quickstart_raw, tmp_path, kind):
    """Issue 29, case 8: a storage that is a link to nowhere ended a run in a raw traceback."""
    import os

    from distsearch.validate import check_job

    storage = tmp_path / "runs"
    if kind == "dangling-link":
        os.symlink(tmp_path / "nowhere", storage)
        needle = "a link to .*nowhere.*, which does not exist; fix: create that folder"
    else:
        storage.write_text("not a folder")
        needle = "which is a file; fix: give a directory"
    quickstart_raw["storage"] = str(storage)
    with pytest.raises(SpecError, match=f"storage: got .*{needle}"):
        check_job(parse_job(quickstart_raw), dry_run=False)


def test_the_dry_run_leaves_the_callers_torch_generator_as_it_found_it(quickstart_raw, tmp_path):
    import torch

    quickstart_raw["storage"] = str(tmp_path / "runs")
    torch.manual_seed(7)
    before = torch.get_rng_state()
    check_job(parse_job(quickstart_raw))  # the dry run seeds torch and builds every family
    assert torch.equal(torch.get_rng_state(), before)
