"""TPE under ASHA: Optuna's TPE sampler as a Tune searcher, told the truth about each trial's fidelity.

Every epoch's metric reaches the Optuna trial as an intermediate value at its epoch. A trial that
ended before ``max_epochs`` (ASHA stopped it, or a budget ended the sweep) is told as PRUNED, so
TPE ranks it with the trials that got as far, by how far it got and then by its value; one that
reached ``max_epochs`` is COMPLETE with its best value; a failed one is FAIL. (Ray's
``OptunaSearch`` tells a stopped trial COMPLETE with its last value, so two-epoch and twenty-epoch
results look alike to the model.) The space is sampled define-by-run: a conditional
sub-parameter is sampled only under its option, and named with it (``search_space.searcher_names``).

Only Optuna's public API is used; the searcher's state is saved as JSON records (no pickle: a run
folder may come from anyone) and rebuilt with ``add_trial`` (ended trials) and ``enqueue_trial`` +
``ask`` (running ones).
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections import Counter
from typing import Any, Iterable, Mapping, Optional, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from .. import constants as C
from ..space.params import Param


@contextlib.contextmanager
def quiet_optuna():
    """Optuna at WARNING while the block runs (it logs an INFO line per trial otherwise), then as it was."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def sample(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """A config of ``space`` in Tune's nested form (``Param.tune_domain``'s), drawn define-by-run."""
    return {name: p.suggest(trial, name) for name, p in space.items()}


def distributions(space: Mapping[str, Param], point: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """The distribution ``sample`` uses for each parameter in ``point`` (searcher names)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(dict(point), skip_if_exists=False)
    trial = study.ask()
    sample(trial, space)
    return {k: v for k, v in trial.distributions.items() if k in point}


class TPESearch(Searcher):
    """Optuna's ``TPESampler`` over a job's space; see the module docstring for what it is told.

    ``points`` are configurations (searcher names) to run first; ``seed_with`` adds earlier
    runs' trials to learn from. At most ``max_concurrent`` trials run at once."""

    def __init__(
        self,
        space: Mapping[str, Param],
        *,
        metric: str,
        mode: str,
        max_epochs: int,
        seed: int,
        startup_trials: int = 10,
        multivariate: bool = True,
        constant_liar: bool = True,
        max_concurrent: int = 1,
        points: Sequence[Mapping[str, Any]] = (),
    ):
        super().__init__(metric=metric, mode=mode)
        self.space, self.max_epochs, self.max_concurrent = space, max_epochs, max_concurrent
        self.settings = {"seed": seed, "startup_trials": startup_trials, "multivariate": multivariate, "constant_liar": constant_liar}
        self.study = self._new_study()
        self.warm_start = {"runs": [], "trials": 0, "skipped": 0}
        self.points = [dict(p) for p in points]  # run first, in order, as each trial is asked for
        self.live: dict[str, optuna.Trial] = {}  # Tune trial id -> its running Optuna trial
        self.records: dict[str, dict[str, Any]] = {}  # Tune trial id -> params, reports, end state (what save() keeps)

    def seed_with(self, prior: tuple[list[optuna.trial.FrozenTrial], dict[str, Any]]) -> None:
        """Learn from earlier trials (``prior_trials``) before the first suggestion."""
        trials, self.warm_start = prior
        self.study.add_trials(trials)

    def _new_study(self, draws_before: int = 0) -> optuna.Study:
        """A study with the job's sampler; ``draws_before`` (trials already drawn, on restore)
        moves its seed on, so that a resumed sweep does not draw its first trials again."""
        s = self.settings
        with warnings.catch_warnings():  # group= is marked experimental; the conditional spaces need it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=s["seed"] + draws_before,
                n_startup_trials=s["startup_trials"],
                multivariate=s["multivariate"],
                group=s["multivariate"],  # conditional sub-spaces: model each option's parameters apart
                constant_liar=s["constant_liar"],
            )
        return optuna.create_study(direction="maximize" if self._mode == "max" else "minimize", sampler=sampler)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return not config  # the job's space is the only space; Tune's param_space stays empty

    def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
        if len(self.live) >= self.max_concurrent:
            return None  # Tune asks again when a trial ends
        if self.points:
            self.study.enqueue_trial(self.points.pop(0), skip_if_exists=False)
        trial = self.study.ask()
        config = sample(trial, self.space)
        self.live[trial_id] = trial
        self.records[trial_id] = {"params": dict(trial.params), "reports": {}, "state": None}
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial, epoch, value = self.live.get(trial_id), result.get(C.EPOCH), result.get(self._metric)
        if trial is None or epoch is None or value is None or not math.isfinite(value):
            return
        reports = self.records[trial_id]["reports"]
        if int(epoch) not in reports:  # a resumed trial repeats its checkpoint's report
            reports[int(epoch)] = float(value)
            trial.report(float(value), int(epoch))

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        if result and not error:
            self.on_trial_result(trial_id, result)  # Tune may hand the last report only here
        trial, record = self.live.pop(trial_id), self.records[trial_id]
        state, value = self.judge(record["reports"], error)
        record.update(state=state.name, value=value)
        self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)

    def judge(self, reports: Mapping[int, float], error: bool) -> tuple[TrialState, Optional[float]]:
        """(Optuna state, value) of an ended trial from its reports: FAIL, COMPLETE at max_epochs
        with the best value, else PRUNED (Optuna takes the last intermediate value)."""
        if error or not reports:
            return TrialState.FAIL, None
        if max(reports) >= self.max_epochs:
            return TrialState.COMPLETE, (max if self._mode == "max" else min)(reports.values())
        return TrialState.PRUNED, None

    def states(self) -> dict[str, int]:
        """How many Optuna trials (warm start included) are in each state."""
        return dict(Counter(t.state.name.lower() for t in self.study.get_trials(deepcopy=False)))

    # ---- saved with Tune's experiment state, read back on resume (distsearch.search.tpe_resume) ----
    def save(self, checkpoint_path: str) -> None:
        running = {t.number for t in self.live.values()}
        ended = [t for t in self.study.get_trials() if t.number not in running and t.state.is_finished()]  # warm start included
        state = {
            "format": STATE_FORMAT,
            "settings": self.settings,
            "records": {k: {**r, "reports": {str(e): v for e, v in r["reports"].items()}} for k, r in self.records.items()},
            "live": list(self.live),
            "points": self.points,
            "warm_start": self.warm_start,
            "ended": [_trial_json(t) for t in ended],
        }
        with open(checkpoint_path, "w") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.load(read_state(f.read(), checkpoint_path))

    def load(self, state: Mapping[str, Any], keep_live: Optional[Iterable[str]] = None) -> None:
        """Take a state ``save`` wrote (``read_state``'s). Its running trials run again, with what
        they had reported: all, or those in ``keep_live`` (the rest are forgotten, never told)."""
        self.settings, self.points, self.warm_start = state["settings"], state["points"], state["warm_start"]
        self.records = {k: {**r, "reports": {int(e): float(v) for e, v in r["reports"].items()}} for k, r in state["records"].items()}
        self.study = self._new_study(draws_before=len(self.records))
        self.live = {}
        for trial_id in state["live"]:
            if keep_live is not None and trial_id not in set(keep_live):
                del self.records[trial_id]
                continue
            self.relive(trial_id, self.records[trial_id]["params"])
        for t in state["ended"]:
            self.study.add_trial(_trial_from_json(t))

    def relive(self, trial_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Make ``trial_id`` a running trial of ``params`` (searcher names), with the reports its
        record holds; returns its config."""
        record = self.records.setdefault(trial_id, {"params": dict(params), "reports": {}, "state": None})
        self.study.enqueue_trial(dict(params), skip_if_exists=False)
        trial = self.study.ask()
        config = sample(trial, self.space)
        for epoch, value in sorted(record["reports"].items()):
            trial.report(value, epoch)
        self.live[trial_id] = trial
        return config


#: How Tune names the files of a searcher's saved state (``Searcher.CKPT_FILE_TMPL``).
STATE_PREFIX = "searcher-state-"
#: The searcher state's format: JSON, read back without running anything from the file.
STATE_FORMAT = "distsearch-tpe/2"
#: A state holds a record per trial; a file larger than this is not one distsearch wrote.
MAX_STATE_BYTES = 256 * 2**20


class UnsafeSearcherState(ValueError):
    """A saved searcher state that is not distsearch's JSON (a pickle, a damaged file)."""


def read_state(data: bytes, where: str, fmt: str = STATE_FORMAT) -> dict[str, Any]:
    """The searcher state of format ``fmt`` in ``data`` (read from ``where``); raises ``UnsafeSearcherState`` naming it."""
    if len(data) > MAX_STATE_BYTES:
        raise UnsafeSearcherState(f"{where}: {len(data)} bytes, more than a searcher state holds; fix: start a new run (--new-run)")
    try:
        state = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise UnsafeSearcherState(
            f"{where}: not the JSON searcher state distsearch writes (a pickle is never loaded: it could run code): {e}; fix: start a new run (--new-run)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise UnsafeSearcherState(f"{where}: not a {fmt} searcher state; fix: resume it with the distsearch that wrote it, or start a new run")
    return state


def _trial_json(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    from optuna.distributions import distribution_to_json

    return {
        "params": t.params,
        "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
        "state": t.state.name,
        "value": t.value if t.state == TrialState.COMPLETE else None,
        "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
    }


def _trial_from_json(d: Mapping[str, Any]) -> optuna.trial.FrozenTrial:
    from optuna.distributions import json_to_distribution

    return optuna.trial.create_trial(
        params=dict(d["params"]),
        distributions={k: json_to_distribution(v) for k, v in d["distributions"].items()},
        state=TrialState[d["state"]],
        value=d["value"],
        intermediate_values={int(k): float(v) for k, v in d["intermediate_values"].items()},
    )


def prior_trials(searcher: TPESearch, warm: Any) -> tuple[list[optuna.trial.FrozenTrial], dict[str, Any]]:
    """``warmstart.load``'s trials as finished Optuna trials, judged as this searcher judges its
    own (COMPLETE, PRUNED at the epoch reached, FAIL); a trial whose values fall outside the
    searcher's distributions (a rounding at a range's end) is skipped and counted too."""
    from ..space.points import searcher_names

    out, skipped = [], warm.skipped
    for t in warm.trials:
        params = searcher_names(searcher.space, t.point)
        dists = distributions(searcher.space, params)
        state, value = searcher.judge(t.metric_by_epoch, error=t.status == C.STATUS_ERROR)
        try:
            out.append(
                optuna.trial.create_trial(
                    params={k: params[k] for k in dists},
                    distributions=dists,
                    state=state,
                    value=value,
                    intermediate_values=t.metric_by_epoch if state != TrialState.FAIL else None,
                )
            )
        except ValueError:
            skipped += 1
    return out, {"runs": list(warm.runs), "trials": len(out), "skipped": skipped}


def newest(tune_dir: str, prefix: str) -> Optional[bytes]:
    import pyarrow.fs as pafs

    from .. import storage

    fs, base = storage.filesystem(tune_dir)
    saved = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)) if i.base_name.startswith(prefix))
    if not saved:
        return None
    with fs.open_input_stream(saved[-1]) as f:
        return f.readall()


def saved_summary(tune_dir: str) -> Optional[dict[str, Any]]:
    """What the searcher state Tune saved last in ``tune_dir`` says: how this run's trials were
    told to the study (``told``: complete, pruned, fail, running) and the warm start. Read from
    storage, so it covers every driver of a resumed run; None before any save."""
    saved = newest(tune_dir, STATE_PREFIX)
    if saved is None:
        return None
    state = read_state(saved, f"{tune_dir}/searcher-state-*")
    told = Counter((r["state"] or "RUNNING").lower() for r in state["records"].values())
    return {"told": dict(told), "warm_start": state["warm_start"]}
