"""A run's files turned into answers: a leaderboard, an HTML report with figures, and a side by
side comparison of runs. No Ray import; reads local paths and URIs alike.
"""

from __future__ import annotations

import html
import re
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import constants as C
from ..search.objective import Objective
from ..search.plan import summary_of
from ..space.names import param_name
from ..storage import join, write_bytes
from .files import read_run

REPORT_FILE = "report.html"
CLOSE_TO_BEST = 0.005  # "within 0.5% of the final best", for time-to-near-best
#: C0 and C1 control characters but the newline: ANSI/OSC sequences in a run's text (a trial's
#: error, a parameter value) would otherwise retitle or clear the terminal the report prints to.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character but the newline written as a Python escape (``\\x1b``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def leaderboard(
    trials: pd.DataFrame, metric: str, mode: str, top: int = 10, best: Mapping[str, Any] | None = None, epochs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The ``top`` trials by best metric (errors last): status, epochs, the test score (the
    selected trial only: the test split is used once) and every hyperparameter."""
    hp = [c for c in trials.columns if c.startswith(C.HP_PREFIX)]
    df = Objective(metric, mode).rank_trials(trials, epochs).copy()
    test_col = "test " + metric.removeprefix("val_")
    test_value = best["test"].get("test_" + metric.removeprefix("val_")) if best else None
    df[test_col] = [test_value if best and t == best[C.TRIAL_ID] else None for t in df[C.TRIAL_ID]]
    cols = [C.TRIAL_ID, C.STATUS, C.EPOCHS_COMPLETED, C.BEST_METRIC, test_col] + hp
    out = df[cols].head(top).rename(columns={C.BEST_METRIC: f"best {metric}", **{c: param_name(c) for c in hp}})
    return out.reset_index(drop=True)


def _board(run: Mapping[str, Any], top: int) -> pd.DataFrame:
    job = run["run"]["job"]
    return leaderboard(run["trials"], job["metric"], job["mode"], top, run.get("best"), run.get("epochs"))


def searcher_name(meta: Mapping[str, Any]) -> str:
    """``tpe+asha``, ``random+asha``, ``random (fifo)``...: who proposed trials and who stopped them."""
    return summary_of(meta)


def searcher_line(meta: Mapping[str, Any]) -> str:
    """The searcher, its settings and how it was told the trials ended."""
    search = meta.get("search") or {}
    line = f"  search: {searcher_name(meta)}, seed {search.get('seed', meta['job'].get('seed'))}"
    if search.get("settings_line"):
        line += f", {search['settings_line']}"
    if search.get("told"):
        line += "; told " + ", ".join(f"{k} {v}" for k, v in sorted(search["told"].items()))
    if search.get("proposed"):
        line += "; proposed " + ", ".join(f"{k} {v}" for k, v in sorted(search["proposed"].items()))
    warm = search.get("warm_start") or {}
    if warm.get("runs"):
        line += f"; warm start: {warm['trials']} trials from {len(warm['runs'])} runs ({warm['skipped']} skipped)"
    return line


def trials_ran(run: Mapping[str, Any]) -> tuple[int, int]:
    """(trials the job asked for, trials that started): a sweep ended by a budget runs fewer."""
    trials = run["trials"]
    ran = int((trials[C.STATUS] != C.STATUS_NOT_STARTED).sum())
    return max(int(run["run"]["job"]["budget"]["num_trials"]), len(trials)), ran


def format_run(run: Mapping[str, Any], top: int = 10) -> str:
    """The leaderboard and the best model's test score, as text."""
    job = run["run"]["job"]
    trials = run["trials"]
    counts = trials[C.STATUS].value_counts().to_dict()
    planned, ran = trials_ran(run)
    lines = [f"run {run['run'].get('run_id', '?')} of job {job['name']} ({job['task']}): {ran} of {planned} trials ran"]
    counts[C.STATUS_NOT_STARTED] = planned - ran  # with those the searcher never drew, which have no row
    lines.append("  " + ", ".join(f"{s}: {counts.get(s, 0)}" for s in C.STATUSES))
    lines.append(searcher_line(run["run"]))
    if "sweep_wall_seconds" in run["run"]:
        lines.append(f"  sweep wall time: {run['run']['sweep_wall_seconds']:.1f} s, {run['run'].get('max_concurrent_trials')} trials at a time")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
        board = _board(run, top)
        lines.append(board.astype(object).where(board.notna(), "").to_string(index=False))  # blank: not applicable
    best = run.get("best")
    if best:
        test = ", ".join(f"{k} = {v:.4f}" for k, v in best["test"].items())
        lines.append(f"best trial {best[C.TRIAL_ID]} (epoch {best[C.EPOCH]}, {best['metric']} = {best['val_metric']:.4f}); held-out test: {test}")
        if best.get("final_train"):
            lines.append("  final train vs val: " + _gap_text(best))
    lines += _ensemble_lines(run.get("ensemble"))
    errors = trials[trials[C.STATUS] == C.STATUS_ERROR]
    for _, r in errors.head(3).iterrows():
        lines.append(f"error in {r[C.TRIAL_ID]}: {str(r[C.ERROR]).strip().splitlines()[-1][:300]}")
    return printable("\n".join(lines))


def _ensemble_lines(ensemble: Mapping[str, Any] | None) -> list[str]:
    """The ensemble beside the single best: validation and test, each scored once."""
    if not ensemble:
        return []
    if ensemble.get("skipped"):
        return [f"ensemble skipped: {ensemble['skipped']}"]
    metric = ensemble["metric"]
    test = "test_" + metric.removeprefix("val_")
    members = ", ".join(f"{m[C.TRIAL_ID]} x{m['weight']:.2f}" for m in ensemble["members"])
    single = ensemble["single_best"]
    return [
        f"ensemble of {len(ensemble['members'])} trial(s) ({members}): {metric} = {ensemble['val'][metric]:.4f}, {test} = {ensemble['test'][test]:.4f}",
        f"  single best {single[C.TRIAL_ID]}: {metric} = {single['val'][metric]:.4f}, {test} = {single['test'][test]:.4f}",
    ]


def _gap_text(best: Mapping[str, Any]) -> str:
    # Same model, eval mode, on each split: the overfitting gap at a glance.
    both = [(k.split("_", 1)[1], v, best["final_val"].get("val_" + k.split("_", 1)[1])) for k, v in best["final_train"].items()]
    return ", ".join(f"{m} {t:.4f} / {v:.4f}" for m, t, v in both if v is not None)


def report_run(directory: str, top: int = 10) -> str:
    return format_run(read_run(directory), top)


# ---------------------------------------------------------------------------------------------
# HTML with figures
# ---------------------------------------------------------------------------------------------
_CAPTIONS = {
    "curves.png": "Validation metric per epoch, one line per trial. Grey dashed: stopped early by ASHA; dotted verticals: ASHA rungs; black: the best trial.",
    "hparams.png": "Each hyperparameter against the trial's best metric.",
    "importance.png": "Hyperparameter importance: the share of the best metric each explains on its own (omega squared), scaled to sum to 1.",
    "gap.png": "The best trial's train and validation metric per epoch: the overfitting gap.",
    "front.png": "The job's metric against its next objective, each trial at its best epoch: the Pareto front in blue, "
    "dominated trials grey, trials that miss a constraint as red crosses; a dashed line is a constraint's bound.",
}


def write_report(directory: str, out_dir: str | None = None, top: int = 20) -> dict[str, str]:
    """Write ``report.html`` and its PNG figures into ``out_dir`` (default: the run directory,
    local path or URI). Returns file name -> path written."""
    from .figures import hp_importance, render

    run = read_run(directory)
    out_dir = out_dir or directory
    imp = hp_importance(run["trials"])  # once: the figure and the table below both show it
    written = {}
    for name, png in render(run, imp=imp).items():
        written[name] = join(out_dir, name)
        write_bytes(written[name], png)
    job, best, meta = run["run"]["job"], run.get("best"), run["run"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>distsearch: {html.escape(job['name'])} {html.escape(str(meta.get('run_id', '')))}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px} table{border-collapse:collapse;font-size:13px}"
        " td,th{border:1px solid #ccc;padding:3px 6px} figure{margin:1.5em 0} img{max-width:100%;border:1px solid #eee}</style>",
        "</head><body>",
        f"<h1>{html.escape(job['name'])} <small>run {html.escape(str(meta.get('run_id', '?')))}</small></h1>",
        "<pre>" + html.escape("\n".join(format_run(run, top=0).splitlines()[:3])) + "</pre>",
    ]
    if best:
        scores = ", ".join(f"{html.escape(k)} = {v:.4f}" for k, v in best["test"].items())
        parts.append(
            f"<p><b>Selected:</b> trial {html.escape(best[C.TRIAL_ID])} at epoch {best[C.EPOCH]}, {html.escape(best['metric'])} = "
            f"{best['val_metric']:.4f}. <b>Held-out test, once:</b> {scores}.</p>"
        )
        if best.get("final_train"):
            parts.append(f"<p>Final train vs validation: {html.escape(_gap_text(best))}</p>")
    for line in _ensemble_lines(run.get("ensemble")):
        parts.append(f"<p>{html.escape(line)}</p>")
    parts.append("<h2>Leaderboard</h2>" + _board(run, top).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))
    if meta.get("front"):
        rows = [{k: v for k, v in p.items() if k != "test"} | (p.get("test") or {}) for p in meta["front"]]
        parts.append(
            "<h2>Pareto front</h2><p>Each trial at its best epoch; its test scores, once each.</p>"
            + pd.DataFrame(rows).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
        )
    if imp is not None:
        parts.append("<h2>Hyperparameter importance</h2>" + imp.rename("importance").to_frame().to_html(float_format=lambda v: f"{v:.3f}"))
    parts.append("<h2>Figures</h2>")
    for name, caption in _CAPTIONS.items():
        if name not in written:
            continue
        parts.append(f"<figure><img src='{name}' alt='{name}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    written[REPORT_FILE] = join(out_dir, REPORT_FILE)
    write_bytes(written[REPORT_FILE], "\n".join(parts).encode())
    return written


# ---------------------------------------------------------------------------------------------
# Comparing runs
# ---------------------------------------------------------------------------------------------
def run_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """What a run found and what it cost: best and test score, worker-epochs, CPU/GPU seconds
    reserved, and how long until the best trial (and one within 0.5% of it) reported."""
    meta, job, trials, epochs = run["run"], run["run"]["job"], run["trials"], run["epochs"]
    objective, s = Objective.of(job), job["scaling"]
    metric = objective.metric
    best = run.get("best")
    test_key = "test_" + metric.removeprefix("val_")
    world = epochs[C.WORLD_SIZE].astype("float64") if C.WORLD_SIZE in epochs else pd.Series(float(s["num_workers"]), index=epochs.index)
    slot_seconds = trials[C.WALL_SECONDS].fillna(0.0).sum() * s["num_workers"]
    started = trials[C.STARTED_AT].min()
    failed = set(trials.loc[trials[C.STATUS] == C.STATUS_ERROR, C.TRIAL_ID])
    scored = epochs[~epochs[C.TRIAL_ID].isin(failed)].dropna(subset=[metric]) if metric in epochs else epochs.iloc[0:0]
    final = objective.best_value(scored[metric]) if metric in scored else None
    to_best = to_near = None
    if final is not None and pd.notna(started):
        at = scored.sort_values(C.TIMESTAMP)
        hit = at[at[metric] == final]
        near = at[[objective.within(v, final, CLOSE_TO_BEST) for v in at[metric]]]
        to_best = (hit[C.TIMESTAMP].iloc[0] - started).total_seconds()
        to_near = (near[C.TIMESTAMP].iloc[0] - started).total_seconds()
    return {
        "run": meta.get("run_id"),
        "job": job["name"],
        "search": searcher_name(meta),
        "trials": len(trials),
        "stopped_early": int((trials[C.STATUS] == C.STATUS_STOPPED).sum()),
        f"best {metric}": final,
        test_key: best["test"].get(test_key) if best else None,
        "worker_epochs": float(world.sum()),
        "cpu_seconds": slot_seconds * s["cpus_per_worker"],
        "gpu_seconds": slot_seconds * s.get("gpus_per_worker", 0.0) if s.get("use_gpu") else 0.0,
        "sweep_seconds": meta.get("sweep_wall_seconds"),
        "seconds_to_best": to_best,
        "seconds_to_within_0.5%": to_near,
    }


def compare_runs(directories: Sequence[str]) -> pd.DataFrame:
    """One column per run, one row per figure of ``run_summary``; ratios to the first run."""
    rows = [run_summary(read_run(d)) for d in directories]
    table = pd.DataFrame(rows).set_index("run").T
    return table


COMPARE_FILE = "compare.html"
COMPARE_FIGURE = "compare.png"


def write_compare(directories: Sequence[str], out_dir: str) -> dict[str, str]:
    """Write the runs' side-by-side table as ``compare.html`` and their best-so-far against
    compute as ``compare.png`` into ``out_dir`` (a local path or URI). Returns name -> path."""
    import io

    from .figures import best_so_far

    runs = [read_run(d) for d in directories]
    buf = io.BytesIO()
    best_so_far(runs).savefig(buf, format="png", dpi=110)
    written = {COMPARE_FIGURE: join(out_dir, COMPARE_FIGURE), COMPARE_FILE: join(out_dir, COMPARE_FILE)}
    write_bytes(written[COMPARE_FIGURE], buf.getvalue())
    table = compare_runs(directories).to_html(na_rep="", float_format=lambda v: f"{v:.4g}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>distsearch: runs side by side</title></head><body>"
        f"<h1>Runs side by side</h1>{table}<figure><img src='{COMPARE_FIGURE}' alt='best so far against compute'>"
        "<figcaption>Each run's best validation metric so far against the worker-epochs spent.</figcaption></figure></body></html>"
    )
    write_bytes(written[COMPARE_FILE], page.encode())
    return written


def format_compare(directories: Sequence[str]) -> str:
    table = compare_runs(directories)
    lines = ["runs side by side (cpu/gpu seconds: trial wall time x reserved CPUs/GPUs):"]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
        lines.append(table.to_string())
    cols = list(table.columns)
    for other in cols[1:]:
        base = table[cols[0]]
        ratio = []
        for key in ("worker_epochs", "cpu_seconds", "sweep_seconds"):
            a, b = base.get(key), table[other].get(key)
            if a and b:
                ratio.append(f"{key} {b / a:.2f}x")
        lines.append(f"{other} against {cols[0]}: " + ", ".join(ratio))
    return printable("\n".join(lines))
