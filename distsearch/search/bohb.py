"""BOHB-style search: Optuna's TPE fitted, for each proposal, on the highest rung with enough results.

BOHB (Falkner et al., 2018) models the results at one budget: the largest at which at least
``min_points`` trials have reported. Under ASHA that is a rung. Each trial that got that far
counts with its value at that rung, whether it stopped there or went on, so a trial stopped
at a rung and one trained to ``max_epochs`` are compared at the same epoch (TPE as
``distsearch.search.tpe`` tells it ranks a stopped trial by how far it got instead). Before any
rung has ``min_points`` results, and for a ``random_fraction`` of proposals after that, the
configuration is drawn at random, as BOHB does to keep exploring. Running trials join each fit
as Optuna's RUNNING trials, so that TPE's constant liar spreads proposals made at once.

The model is Optuna's ``TPESampler`` (multivariate, grouped by conditional sub-space), or with
``model="gp"`` Optuna's ``GPSampler`` (a Gaussian process over the parameters every fitted trial
shares, the others drawn at random; running trials enter its acquisition as pending points), in
a study built afresh for each proposal. Its state is each trial's parameters and reports: a resumed
sweep rebuilds it from the run's ledger and checkpoints (``BOHBSearcher.resume``), and what
Tune saves of it is JSON, read only for the report's summary.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from typing import Any, Mapping, Optional, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from .. import constants as C
from ..space.params import Param
from .tpe import distributions, sample

#: The saved state's format (``BOHBSearch.save``): JSON.
STATE_FORMAT = "distsearch-bohb/1"
#: BOHB's default share of proposals drawn at random once a rung can be modelled.
RANDOM_FRACTION = 1 / 3
#: The models a rung's results can be fitted with: Optuna's TPE or its Gaussian process.
MODELS = ("tpe", "gp")


class BOHBSearch(Searcher):
    """Proposals from TPE fitted on the values at the highest rung of ``rungs`` (epochs, ascending,
    ``max_epochs`` last) that holds ``min_points`` results; see the module docstring."""

    def __init__(
        self,
        space: Mapping[str, Param],
        *,
        metric: str,
        mode: str,
        rungs: Sequence[int],
        seed: int,
        min_points: int,
        max_concurrent: int = 1,
        random_fraction: float = RANDOM_FRACTION,
        model: str = "tpe",
    ):
        if model not in MODELS:
            raise ValueError(f"model: got {model!r}; fix: use one of {', '.join(MODELS)}")
        super().__init__(metric=metric, mode=mode)
        self.space, self.rungs, self.max_concurrent = space, sorted(set(int(r) for r in rungs)), max_concurrent
        self.settings = {"seed": seed, "min_points": min_points, "random_fraction": random_fraction, "rungs": self.rungs, "model": model}
        self.records: dict[str, dict[str, Any]] = {}  # Tune trial id -> params (searcher names), reports, ended
        self.live: set[str] = set()
        self.fits: dict[str, int] = {}  # rung epoch (or "random") -> proposals made from it
        self._dists: dict[str, Any] = {}  # searcher name -> its Optuna distribution, learnt from the proposals

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return not config  # the job's space is the only space; Tune's param_space stays empty

    def model_rung(self) -> Optional[int]:
        """The highest rung at which ``min_points`` trials have reported, or None."""
        for rung in reversed(self.rungs):
            if sum(rung in r["reports"] for r in self.records.values()) >= self.settings["min_points"]:
                return rung
        return None

    def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
        if len(self.live) >= self.max_concurrent:
            return None  # Tune asks again when a trial ends
        drawn = len(self.records)
        rung = self.model_rung()
        explore = random.Random(self.settings["seed"] * 1_000_003 + drawn).random() < self.settings["random_fraction"]
        study = self._study(rung if not explore else None, seed=self.settings["seed"] + drawn)
        trial = study.ask()
        config = sample(trial, self.space)
        self._dists.update(trial.distributions)
        self.records[trial_id] = {"params": dict(trial.params), "reports": {}, "ended": False}
        self.live.add(trial_id)
        key = "random" if rung is None or explore else str(rung)
        self.fits[key] = self.fits.get(key, 0) + 1
        return config

    def _study(self, rung: Optional[int], seed: int) -> optuna.Study:
        direction = "maximize" if self._mode == "max" else "minimize"
        if rung is None:
            return optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=seed))
        study = optuna.create_study(direction=direction, sampler=self._sampler(seed))
        trials = []
        for trial_id, r in self.records.items():
            dists = self._distributions(r["params"])
            if rung in r["reports"]:
                trials.append(self._frozen(r["params"], dists, TrialState.COMPLETE, r["reports"][rung]))
            elif trial_id in self.live:
                trials.append(self._frozen(r["params"], dists, TrialState.RUNNING, None))
        study.add_trials(trials)
        return study

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():  # group= and GPSampler are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if self.settings["model"] == "gp":
                # the parameters of one model family only (a conditional sub-space) are outside
                # the space every fitted trial shares: drawn by the independent sampler, on purpose
                random_draws = optuna.samplers.RandomSampler(seed=seed)
                return optuna.samplers.GPSampler(seed=seed, n_startup_trials=0, independent_sampler=random_draws, warn_independent_sampling=False)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, multivariate=True, group=True, constant_liar=True)

    def _distributions(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if any(k not in self._dists for k in params):  # a state read back from JSON: derive them once
            self._dists.update(distributions(self.space, params))
        return {k: self._dists[k] for k in params}

    @staticmethod
    def _frozen(params, dists, state, value) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(params=dict(params), distributions=dists, state=state, value=value)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        record, epoch, value = self.records.get(trial_id), result.get(C.EPOCH), result.get(self._metric)
        if record is None or epoch is None or value is None or not math.isfinite(value):
            return
        record["reports"].setdefault(int(epoch), float(value))  # a resumed trial repeats its checkpoint's report

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if trial_id not in self.records:
            return
        if result and not error:
            self.on_trial_result(trial_id, result)  # Tune may hand the last report only here
        self.live.discard(trial_id)
        self.records[trial_id]["ended"] = True
        if error:
            self.records[trial_id]["reports"] = {}  # a failed trial's reports say nothing of its configuration

    def relive(self, trial_id: str, params: Mapping[str, Any], reports: Mapping[int, float], ended: bool) -> None:
        """Take a trial of an earlier driver: ``params`` (searcher names) and its ``reports``."""
        self.records[trial_id] = {"params": dict(params), "reports": {int(e): float(v) for e, v in reports.items()}, "ended": ended}
        if not ended:
            self.live.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        records = {k: {**r, "reports": {str(e): v for e, v in r["reports"].items()}} for k, r in self.records.items()}
        with open(checkpoint_path, "w") as f:
            json.dump({"format": STATE_FORMAT, "settings": self.settings, "records": records, "fits": self.fits}, f)
