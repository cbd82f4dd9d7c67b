"""Figures of one run, drawn from its Parquet files with matplotlib's ``Figure`` API. No Ray import.

No pyplot, no backend choice and no ``rcParams``: the caller's matplotlib is left as it was found,
and a figure is rendered to PNG by the Agg canvas that ``Figure.savefig`` picks itself.

Each function takes the dict ``results.read_run`` returns and gives a matplotlib Figure;
``render`` gives every figure as PNG bytes, keyed by file name. The figures:

- ``curves.png``: the validation metric against epoch, one line per trial; trials ASHA stopped
  early are grey and dashed, failed trials red, the best trial thick; ASHA's rungs are dotted.
- ``hparams.png``: each hyperparameter against the trial's best metric.
- ``importance.png``: hyperparameter importance: the share of the metric each explains on its own.
- ``gap.png``: the best trial's train and validation metric against epoch (the overfitting gap).
- ``front.png``, for a job with objectives: the Pareto front (``distsearch.results.front``).
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from .. import constants as C
from ..search.objective import Objective
from ..space.names import param_name

MIN_TRIALS_FOR_IMPORTANCE = 5
_STATUS_STYLE = {
    C.STATUS_COMPLETED: {"color": None, "linestyle": "-", "alpha": 0.9, "linewidth": 1.4},
    C.STATUS_STOPPED: {"color": "0.6", "linestyle": "--", "alpha": 0.8, "linewidth": 1.0},
    C.STATUS_ERROR: {"color": "tab:red", "linestyle": ":", "alpha": 0.9, "linewidth": 1.0},
    C.STATUS_CANCELLED: {"color": "tab:orange", "linestyle": "-.", "alpha": 0.8, "linewidth": 1.0},
}


def _subplots(figsize, nrows: int = 1, ncols: int = 1, squeeze: bool = True):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


#: Tick labels as plain numbers (0.001), not mathtext: a label reads the same in any renderer.
_PLAIN = ticker.FuncFormatter(lambda v, _: f"{v:g}")


def _job(run: Mapping[str, Any]) -> Mapping[str, Any]:
    return run["run"]["job"]


def asha_rungs(job: Mapping[str, Any]) -> list[int]:
    """The epochs at which ASHA compares trials: grace period times powers of the reduction factor."""
    asha, max_epochs = job.get("asha", {}), job["budget"]["max_epochs"]
    if not asha.get("enabled", True):
        return []
    rungs, r = [], float(asha.get("grace_period_epochs", 1))
    while r < max_epochs:
        rungs.append(int(round(r)))
        r *= float(asha.get("reduction_factor", 3))
    return rungs


def best_trial_id(run: Mapping[str, Any]) -> Optional[str]:
    """The trial the figures highlight: the one tested (best.json), else the best that did not fail."""
    if run.get("best"):
        return run["best"][C.TRIAL_ID]
    row = Objective.of(_job(run)).best_trial(run["trials"], run.get("epochs"))
    return None if row is None else row[C.TRIAL_ID]


def learning_curves(run: Mapping[str, Any]):
    job, trials, epochs = _job(run), run["trials"], run["epochs"]
    metric, best = job["metric"], best_trial_id(run)
    fig, ax = _subplots((8, 4.5))
    status = dict(zip(trials[C.TRIAL_ID], trials[C.STATUS], strict=True))
    for tid, rows in epochs.groupby(C.TRIAL_ID, sort=True) if metric in epochs else []:
        style = dict(_STATUS_STYLE.get(status.get(tid), _STATUS_STYLE[C.STATUS_COMPLETED]))
        if tid == best:
            style.update(color="black", linestyle="-", linewidth=2.6, alpha=1.0)
        ax.plot(rows[C.EPOCH], rows[metric], marker="o", markersize=2.5, label=f"best: {tid}" if tid == best else None, **style)
    for rung in asha_rungs(job):
        ax.axvline(rung, color="tab:blue", linestyle=":", linewidth=1)
    ax.plot([], [], color="0.6", linestyle="--", label="stopped early by ASHA")
    ax.plot([], [], color="tab:blue", linestyle=":", label="ASHA rung")
    ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch, {len(trials)} trials")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _hp_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c.startswith(C.HP_PREFIX) and trials[c].notna().any() and trials[c].nunique() > 1]


def hparams_vs_metric(run: Mapping[str, Any]):
    job, trials = _job(run), run["trials"]
    cols = _hp_columns(trials)
    n = max(len(cols), 1)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = _subplots((4 * ncols, 3 * nrows), nrows, ncols, squeeze=False)
    colors = (
        trials[C.STATUS]
        .map({C.STATUS_COMPLETED: "tab:green", C.STATUS_STOPPED: "0.55", C.STATUS_ERROR: "tab:red", C.STATUS_CANCELLED: "tab:orange"})
        .fillna("0.3")
    )
    rng = np.random.default_rng(0)
    for ax, col in zip(axes.flat, cols, strict=False):  # the grid may have spare axes
        values, y = trials[col], trials[C.BEST_METRIC]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            x = values.astype("float64")
            ax.scatter(x, y, c=colors, s=22)
            positive = x.dropna()
            if len(positive) and (positive > 0).all() and positive.max() / positive.min() >= 20:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(_PLAIN)
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            cats = sorted(values.dropna().astype(str).unique())
            pos = values.astype("string").map({c: i for i, c in enumerate(cats)}).astype("float64")
            ax.scatter(pos + rng.uniform(-0.15, 0.15, len(pos)), y, c=colors, s=22)
            # Hyperparameter values are text to show as written: "$a$" must not become mathtext.
            ax.set_xticks(range(len(cats)), cats, rotation=30, fontsize=8, parse_math=False)
        ax.set(xlabel=param_name(col), ylabel=f"best {job['metric']}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    if not cols:
        axes.flat[0].text(0.5, 0.5, "no hyperparameter varied across trials", ha="center", va="center")
    fig.suptitle("hyperparameters against the best metric (green: completed, grey: stopped early, red: failed)", fontsize=9)
    fig.tight_layout()
    return fig


#: Bins a numeric hyperparameter with more distinct values than this is cut into, by quantile.
IMPORTANCE_BINS = 4


def _groups(values: pd.Series) -> pd.Series:
    """Each trial's group for one hyperparameter: its value, or for a numeric one with many values
    its quantile bin; "not applicable" (a conditional parameter's NaN) is a group of its own."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.nunique() > IMPORTANCE_BINS:
        bins = pd.qcut(values.astype("float64").rank(method="first"), IMPORTANCE_BINS, labels=False)
        return bins.astype("float64").fillna(-1.0)
    return values.astype("string").fillna("<none>")


def hp_importance(trials: pd.DataFrame) -> Optional[pd.Series]:
    """Each varied hyperparameter's share of the trials' best metric that it explains on its own
    (one-way ANOVA's omega squared over its values or bins, clipped at 0), scaled to sum to 1; None
    with fewer than ``MIN_TRIALS_FOR_IMPORTANCE`` trials.

    fANOVA's main effects without a surrogate model: with tens of trials it ranks, it does not
    measure, and interactions are not counted. Omega squared, not eta squared, so that a
    parameter with more groups does not explain more by chance alone."""
    ok = trials.dropna(subset=[C.BEST_METRIC])
    cols = _hp_columns(ok)
    if len(ok) < MIN_TRIALS_FOR_IMPORTANCE or not cols:
        return None
    y = ok[C.BEST_METRIC].astype("float64")
    total = float(((y - y.mean()) ** 2).sum())
    shares = {}
    for col in cols:
        groups = y.groupby(_groups(ok[col]).to_numpy())
        k = groups.ngroups
        between = float((groups.size() * (groups.mean() - y.mean()) ** 2).sum())
        within_ms = (total - between) / (len(y) - k) if len(y) > k else 0.0
        omega = (between - (k - 1) * within_ms) / (total + within_ms) if total > 0 else 0.0
        shares[param_name(col)] = max(0.0, omega)
    imp = pd.Series(shares, dtype="float64")
    return (imp / imp.sum() if imp.sum() > 0 else imp).sort_values(ascending=False)


_NOT_GIVEN: Any = object()


def importance(run: Mapping[str, Any], imp: Optional[pd.Series] = _NOT_GIVEN):
    """The importance figure; ``imp`` is ``hp_importance`` of the run's trials when the caller has
    computed it already, so that a report computes it once."""
    imp = hp_importance(run["trials"]) if imp is _NOT_GIVEN else imp
    fig, ax = _subplots((7, 3.5))
    if imp is None:
        ax.text(0.5, 0.5, f"importance needs at least {MIN_TRIALS_FOR_IMPORTANCE} trials with a metric", ha="center", va="center")
        ax.axis("off")
    else:
        ax.barh(imp.index[::-1], imp.values[::-1], color="tab:blue")
        ax.set(xlabel="share of the metric explained on its own (omega squared)", title=f"hyperparameter importance for {_job(run)['metric']}")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def overfitting_gap(run: Mapping[str, Any]):
    job, epochs = _job(run), run["epochs"]
    name = job["metric"].split("_", 1)[1]
    best = best_trial_id(run)
    fig, ax = _subplots((7, 4))
    rows = epochs[epochs[C.TRIAL_ID] == best] if best is not None else epochs.iloc[0:0]
    for split, style in (("train", "-"), ("val", "--")):
        col = f"{split}_{name}"
        if col in rows:
            ax.plot(rows[C.EPOCH], rows[col], linestyle=style, marker="o", markersize=3, label=col)
    if rows.empty:
        ax.text(0.5, 0.5, "no trial reported a metric", ha="center", va="center")
    ax.set(xlabel="epoch", ylabel=name, title=f"best trial {best}: train against validation")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def best_so_far(runs: list[Mapping[str, Any]]):
    """For runs of one job side by side: each run's best validation metric so far (failed trials
    left out) against the worker-epochs spent, in the order the reports arrived."""
    fig, ax = _subplots((8, 4.5))
    metric = _job(runs[0])["metric"]
    for run in runs:
        objective = Objective.of(_job(run))
        failed = set(run["trials"].loc[run["trials"][C.STATUS] == C.STATUS_ERROR, C.TRIAL_ID])
        epochs = run["epochs"]
        rows = epochs[~epochs[C.TRIAL_ID].isin(failed)].dropna(subset=[metric]).sort_values(C.TIMESTAMP) if metric in epochs else epochs.iloc[0:0]
        world = rows[C.WORLD_SIZE].astype("float64") if C.WORLD_SIZE in rows else pd.Series(1.0, index=rows.index)
        best = rows[metric].cummin() if objective.mode == "min" else rows[metric].cummax()
        ax.step(world.cumsum(), best, where="post", label=str(run["run"].get("run_id", "?")))
    ax.set(xlabel="worker-epochs", ylabel=f"best {metric} so far", title=f"best {metric} against compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURES = {"curves.png": learning_curves, "hparams.png": hparams_vs_metric, "importance.png": importance, "gap.png": overfitting_gap}


def render(run: Mapping[str, Any], dpi: int = 110, imp: Optional[pd.Series] = _NOT_GIVEN) -> dict[str, bytes]:
    """Every figure of ``run`` as PNG bytes, keyed by file name (``front.png`` for a run with
    objectives); ``imp`` as for ``importance``."""
    from .front import figure as front_figure

    out = {}
    for name, draw in {**FIGURES, "front.png": front_figure}.items():
        fig = importance(run, imp) if draw is importance else draw(run)
        if fig is None:
            continue
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        out[name] = buf.getvalue()
    return out
