"""Property: no job spec, however malformed, ends in anything but a SpecError naming fields."""

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distsearch.spec.model import SpecError, parse_job
from distsearch.validate import check_job

from ..conftest import JOBS

BASE = yaml.safe_load((JOBS / "quickstart.yaml").read_text())
FIELDS = [
    "name",
    "task",
    "seed",
    "metric",
    "mode",
    "space",
    "budget",
    "asha",
    "scaling",
    "checkpointing",
    "harness",
    "task_options",
    "storage",
    "max_concurrent_trials",
    "lr",
    "choice",
    "loguniform",
    "randint",
    "model",
    "num_trials",
    "max_epochs",
    "grace_period_epochs",
    "reduction_factor",
    "num_workers",
    "cpus_per_worker",
    "use_gpu",
    "path",
    "target",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["mlp", "cnn", "digits", "tabular", "charlm", "custom", "max", "min", "val_accuracy"]),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


def _check(raw) -> None:
    try:
        spec = parse_job(raw)
        check_job(spec)
    except SpecError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_any_value_as_a_whole_spec(raw):
    _check(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3), values), min_size=1, max_size=4))
def test_mutations_of_a_valid_spec(edits):
    raw = copy.deepcopy(BASE)
    for path, value in edits:
        node = raw
        for k in path[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[path[-1]] = value
    _check(raw)
