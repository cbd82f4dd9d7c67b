"""The spec's search space translated into Tune domains, sampled without a cluster."""

import numpy as np
from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Quantized, Uniform
from ray.tune.search.variant_generator import generate_variants

from distsearch.space import names as space
from distsearch.spec.model import load_job, parse_job

from ..conftest import JOBS


def to_tune(space):
    return {name: p.tune_domain() for name, p in space.items()}


def _space(raw_space):
    return parse_job({"name": "s", "task": "digits", "metric": "val_accuracy", "mode": "max", "space": raw_space}).space


def test_each_form_becomes_the_matching_tune_domain():
    dom = to_tune(
        _space(
            {
                "lr": {"loguniform": [1e-4, 1e-1]},
                "dropout": {"uniform": [0.0, 0.5]},
                "momentum": {"quniform": [0.8, 0.99, 0.01]},
                "weight_decay": {"qloguniform": [1e-6, 1e-2, 1e-6]},
                "depth": {"randint": [1, 4]},
                "width": {"qrandint": [32, 256, 32]},
                "optimizer": {"choice": ["sgd", "adam"]},
                "batch_size": 64,
            }
        )
    )
    assert isinstance(dom["lr"], Float) and isinstance(dom["lr"].get_sampler(), LogUniform)
    assert (dom["lr"].lower, dom["lr"].upper) == (1e-4, 1e-1)
    assert isinstance(dom["dropout"].get_sampler(), Uniform)
    assert isinstance(dom["momentum"].get_sampler(), Quantized) and dom["momentum"].get_sampler().q == 0.01
    assert isinstance(dom["weight_decay"].get_sampler(), Quantized)
    assert isinstance(dom["depth"], Integer) and (dom["depth"].lower, dom["depth"].upper) == (1, 4)
    assert isinstance(dom["width"], Integer) and dom["width"].get_sampler().q == 32
    assert isinstance(dom["optimizer"], Categorical) and dom["optimizer"].categories == ["sgd", "adam"]
    assert dom["batch_size"] == 64


def _samples(spec_space, n, seed=0):
    rs = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        for _, cfg in generate_variants(to_tune(spec_space), random_state=rs):
            out.append(space.flatten(cfg))
    return out


def test_conditional_subspaces_sample_only_their_own_parameters():
    spec = load_job(JOBS / "quickstart.yaml")
    flat = _samples(spec.space, 200)
    families = {s["model"] for s in flat}
    assert families == {"mlp", "cnn"}
    for s in flat:
        if s["model"] == "mlp":
            assert "model.channels" not in s and 1 <= s["model.depth"] <= 3 and s["model.width"] in (64, 128, 256)
        else:
            assert s["model.channels"] in (16, 32) and 1 <= s["model.depth"] <= 2
        assert 3e-4 <= s["lr"] < 3e-2 and s["optimizer"] in ("adam", "adamw", "sgd")
    # a log-uniform range spanning two decades puts about half the mass below the geometric mean
    below = np.mean([s["lr"] < np.sqrt(3e-4 * 3e-2) for s in flat])
    assert 0.35 < below < 0.65


def test_quantized_values_are_multiples_of_q():
    flat = _samples(_space({"width": {"qrandint": [32, 256, 32]}, "momentum": {"quniform": [0.8, 0.99, 0.01]}}), 100)
    assert all(s["width"] % 32 == 0 and 32 <= s["width"] <= 256 for s in flat)
    assert all(abs(s["momentum"] * 100 - round(s["momentum"] * 100)) < 1e-6 for s in flat)


def test_same_seed_same_trials():
    spec = load_job(JOBS / "quickstart.yaml")
    assert _samples(spec.space, 10, seed=3) == _samples(spec.space, 10, seed=3)
    assert _samples(spec.space, 10, seed=3) != _samples(spec.space, 10, seed=4)


def test_param_types_cover_every_flat_name():
    spec = load_job(JOBS / "quickstart.yaml")
    types = space.param_types(spec.space)
    assert types["model"] is str and types["model.depth"] is int and types["lr"] is float and types["batch_size"] is int
    for s in _samples(spec.space, 50):
        assert set(s) <= set(types)
        for k, v in s.items():
            assert isinstance(v, types[k]), (k, v)


def test_each_parameter_type_draws_only_values_it_can_produce():
    """``Param.draw`` (a searcher's or a simulator's random draw) stays inside ``value_problem``'s domain."""
    import random

    from distsearch.space.points import point_problems

    params = _space(
        {
            "lr": {"loguniform": [1.0e-4, 1.0e-1]},
            "wd": {"qloguniform": [1.0e-6, 1.0e-2, 1.0e-6]},
            "momentum": {"quniform": [0.8, 0.99, 0.01]},
            "depth": {"randint": [1, 4]},
            "width": {"qrandint": [32, 256, 32]},
            "optimizer": {"choice": ["sgd", "adam"]},
            "batch_size": 64,
            "model": {"choice": {"mlp": {"depth": {"randint": [1, 3]}}, "cnn": {"channels": {"choice": [16, 32]}}}},
        }
    )
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        point = space.flatten({name: p.draw(rng) for name, p in params.items()})
        assert point_problems(params, point) == [], point
        seen.add(point["model"])
    assert seen == {"mlp", "cnn"}
