"""Inputs that would waste a sweep are refused before Ray starts: YAML as people write it, every
parameter value against its domain, seeds and storage."""

import pytest
import yaml

from distsearch.spec import yaml_load as spec_yaml
from distsearch.spec.model import SpecError, load_job, parse_job
from distsearch.validate import check_job

from ..conftest import JOBS


def _refused(raw, *needles, task=False):
    with pytest.raises(SpecError) as info:
        spec = parse_job(raw)
        if task:
            check_job(spec)
    for needle in needles:
        assert needle in str(info.value), f"{needle!r} missing from:\n{info.value}"


def test_numbers_as_people_write_them(tmp_path):
    text = (JOBS / "quickstart.yaml").read_text().replace("loguniform: [3.0e-4, 3.0e-2]", "loguniform: [3e-4, 3E-2]")
    assert "[3e-4, 3E-2]" in text
    job = tmp_path / "job.yaml"
    job.write_text(text)
    assert load_job(job).space["lr"].low == 3e-4
    assert spec_yaml.load("a: 1e4x\nb: 1_000\n") == {"a": "1e4x", "b": 1000}  # only numbers become numbers


def test_a_duplicate_key_is_refused_with_its_lines(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text((JOBS / "quickstart.yaml").read_text() + "\nseed: 7\n")
    with pytest.raises(SpecError, match=r"line \d+: key 'seed' appears again \(first on line \d+\); fix: keep one of them"):
        load_job(job)


def test_alias_bombs_and_huge_files_are_refused_at_once(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")  # a few hundred bytes, 9**7 values expanded
    with pytest.raises(SpecError, match="aliases expand to more than"):
        load_job(bomb)
    many = tmp_path / "many.yaml"
    many.write_text("v: &v 1\n" + "".join(f"k{i}: *v\n" for i in range(spec_yaml.MAX_ALIASES + 1)))
    with pytest.raises(SpecError, match="aliases"):
        load_job(many)
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: " + "x" * (spec_yaml.MAX_BYTES + 1))
    with pytest.raises(SpecError, match="bytes, more than"):
        load_job(huge)


BAD_VALUES = [
    ("optimizer", {"choice": ["adam", "lion"]}, "space.optimizer: got 'lion'; fix: use one of sgd, adam, adamw"),
    ("activation", "swish", "space.activation: got 'swish'; fix: use one of relu, tanh, sigmoid, gelu"),
    ("dropout", {"uniform": [0.0, 1.5]}, "space.dropout: got 1.5; fix: use a value from 0 below 1"),
    ("batch_size", 0, "space.batch_size: got 0; fix: use a value from 1"),
    ("batch_size", "sixty-four", "space.batch_size: got 'sixty-four'; fix: use a whole number from 1"),
    ("batch_size", 32.5, "space.batch_size: got 32.5; fix: use a whole number from 1"),
    ("lr", 0, "space.lr: got 0; fix: use a value above 0"),
    ("lr_schedule", "step", "space.lr_schedule: got 'step'; fix: use one of none, cosine"),
]


@pytest.mark.parametrize("name,value,message", BAD_VALUES, ids=[f"{n}={v!r}" for n, v, _ in BAD_VALUES])
def test_every_value_a_space_can_produce_fits_its_parameter(quickstart_raw, name, value, message):
    quickstart_raw["space"][name] = value
    _refused(quickstart_raw, message, task=True)


def test_conditional_sub_parameters_are_checked_too(quickstart_raw):
    quickstart_raw["space"]["model"]["choice"]["mlp"]["width"] = {"choice": [64, -8]}
    _refused(quickstart_raw, "space.model.choice.mlp.width: got -8; fix: use a value from 1", task=True)


def test_seed_and_storage_are_usable(quickstart_raw, tmp_path):
    _refused({**quickstart_raw, "seed": 2**32}, "seed", "fix: set seed to 4294967295 or less")
    _refused({**quickstart_raw, "storage": "ftp://host/runs"}, "storage: got 'ftp://host/runs'; fix: use a local path or a URI of file://, s3://")
    a_file = tmp_path / "runs"
    a_file.write_text("not a directory")
    _refused({**quickstart_raw, "storage": str(a_file)}, "which is a file; fix: give a directory")
    assert parse_job({**quickstart_raw, "storage": str(tmp_path / "new"), "seed": 2**32 - 1}).seed == 2**32 - 1


def test_yaml_parse_of_the_quickstart_is_unchanged():
    assert spec_yaml.load((JOBS / "quickstart.yaml").read_text()) == yaml.safe_load((JOBS / "quickstart.yaml").read_text())


def _table_job(tmp_path, frame, **options):
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    return {
        "name": "t", "task": "tabular", "metric": "val_accuracy", "mode": "max", "space": {"lr": 0.01},
        "task_options": {"path": str(path), "target": "y", **options}, "storage": str(tmp_path / "runs"),
    }  # fmt: skip


def test_tables_that_would_fail_every_trial_are_refused(tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    good = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60), "y": [0, 1, 2] * 20})
    check_job(parse_job(_table_job(tmp_path, good)))
    inf = good.assign(a=good["a"].where(good.index != 3, np.inf))
    _refused(_table_job(tmp_path, inf), "column 'a'", "1 infinite value(s); fix:", task=True)
    _refused(_table_job(tmp_path, good, target=["y", "a"]), "task_options.target: got ['y', 'a']; fix: name one column", task=True)
    dup = tmp_path / "dup.csv"
    dup.write_text("a,a,y\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)))
    raw = _table_job(tmp_path, good)
    raw["task_options"]["path"] = str(dup)
    _refused(raw, "more than once; fix: give each column one name", task=True)


def test_integer_labels_with_a_missing_value_stay_classes(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": range(61), "y": [0, 1, 2] * 20 + [None]})  # a missing label makes the column float
    assert frame["y"].dtype.kind == "f"
    task = check_job(parse_job(_table_job(tmp_path, frame)))
    assert task.problem == "classification" and task.class_names == ["0", "1", "2"] and task.dropped_rows == 1


def test_a_factory_that_raises_gets_its_error_and_last_frame(tmp_path, monkeypatch):
    (tmp_path / "broken_factory.py").write_text("def make():\n    raise KeyError('no such column')\n")
    monkeypatch.chdir(tmp_path)
    raw = {
        "name": "b", "task": "custom", "metric": "val_accuracy", "mode": "max", "space": {"lr": 0.01},
        "task_options": {"factory": "broken_factory:make"}, "storage": str(tmp_path / "runs"),
    }  # fmt: skip
    _refused(raw, "broken_factory:make raised KeyError: 'no such column' (at", "broken_factory.py:2, in make); fix:", task=True)


SHAPE_BUG = """
import torch
from torch import nn
from distsearch.tasks import ClassificationHead, Splits


class Task(ClassificationHead):
    name, families, num_classes = "bug", ("wide",), 2
    hyperparameters = frozenset({"model"})

    def splits(self, seed):
        x, y = torch.randn(40, 5), torch.arange(40) % 2
        return Splits(train=(x[:24], y[:24]), val=(x[24:32], y[24:32]), test=(x[32:], y[32:]))

    def build_model(self, params, splits):
        return nn.Linear(7, 2)  # the data has 5 features


def make():
    return Task()
"""


def test_a_model_with_a_shape_bug_fails_validate_not_every_trial(tmp_path, monkeypatch):
    from distsearch.cli import main

    (tmp_path / "shape_bug.py").write_text(SHAPE_BUG)
    monkeypatch.chdir(tmp_path)
    raw = {
        "name": "bug", "task": "custom", "metric": "val_accuracy", "mode": "max", "space": {"model": "wide", "lr": 0.01},
        "task_options": {"factory": "shape_bug:make"}, "storage": str(tmp_path / "runs"),
    }  # fmt: skip
    _refused(raw, "space.model: family 'wide' fails a dry run", "RuntimeError: mat1 and mat2 shapes cannot be multiplied", "fix:", task=True)
    job = tmp_path / "bug.yaml"
    job.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(job)]) == 2
    assert main(["validate", str(job), "--no-dry-run"]) == 0  # the flag for models too big to build here
