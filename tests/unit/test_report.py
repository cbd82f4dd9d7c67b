"""Reports from a run's files, without Ray: leaderboard, figures, importance, comparison, progress."""

import math
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from distsearch import constants as C
from distsearch import storage
from distsearch.cli import main as cli
from distsearch.results import figures, report
from distsearch.results import files as results
from distsearch.search.objective import Objective

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_run(directory, *, n_trials=12, max_epochs=9, asha=True, seed=0, slow=1.0, search=None):
    """A synthetic run whose best metric depends on lr only (and a little noise)."""
    rng = np.random.default_rng(seed)
    trial_rows, epoch_rows = [], []
    for i in range(n_trials):
        tid = f"t{seed}_{i:05d}"
        lr = float(10 ** rng.uniform(-4, -1))
        quality = 1 - abs(math.log10(lr) + 2.5) / 3  # best near lr = 3e-3
        epochs = max_epochs if (not asha or i % 3 == 0) else (1 if i % 3 == 1 else 3)
        start = T0 + timedelta(seconds=i * 5 * slow)
        curve = [quality * (1 - 0.5 ** (e + 1)) for e in range(epochs)]
        for e, v in enumerate(curve, start=1):
            epoch_rows.append(
                {
                    C.TRIAL_ID: tid,
                    C.EPOCH: e,
                    C.TIMESTAMP: start + timedelta(seconds=e * slow),
                    "val_accuracy": v,
                    "train_accuracy": min(1.0, v + 0.05),
                    "val_loss": 1 - v,
                    "train_loss": 0.95 - v,
                    C.WORLD_SIZE: 2,
                    C.BUSY_SECONDS: e * 0.5,
                }
            )
        status = C.STATUS_COMPLETED if epochs == max_epochs else C.STATUS_STOPPED
        trial_rows.append(
            {
                C.TRIAL_ID: tid,
                "params": {"lr": lr, "optimizer": ["adam", "sgd"][i % 2], "model": "mlp", "model.width": [16, 32, 64][i % 3]},
                C.STATUS: status,
                C.EPOCHS_COMPLETED: epochs,
                C.BEST_METRIC: max(curve),
                C.BEST_EPOCH: epochs,
                C.LAST_METRIC: curve[-1],
                C.STARTED_AT: start,
                C.ENDED_AT: start + timedelta(seconds=(epochs + 1) * slow),
                C.WALL_SECONDS: (epochs + 1) * slow,
                C.RELEASE_SECONDS: 0.1,
                C.ERROR: None,
            }
        )
    types = {"lr": float, "optimizer": str, "model": str, "model.width": int}
    trials, epochs = results.trials_frame(trial_rows, types), results.epochs_frame(epoch_rows)
    results.write_tables(directory, trials, epochs)
    best = trials.sort_values(C.BEST_METRIC, ascending=False).iloc[0]
    job = {
        "name": "synthetic",
        "task": "digits",
        "metric": "val_accuracy",
        "mode": "max",
        "budget": {"num_trials": n_trials, "max_epochs": max_epochs},
        "asha": {"enabled": asha, "grace_period_epochs": 1, "reduction_factor": 3},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "use_gpu": False, "gpus_per_worker": 0.0},
    }
    storage.write_json(
        storage.join(directory, C.RUN_FILE),
        {
            "run_id": f"run{seed}",
            "job": job,
            "sweep_wall_seconds": 100.0 * slow,
            "max_concurrent_trials": 2,
            "search": search or {"algorithm": "random", "seed": seed},
        },
    )
    storage.write_json(
        storage.join(directory, C.BEST_FILE),
        {
            C.TRIAL_ID: best[C.TRIAL_ID],
            C.EPOCH: int(best[C.BEST_EPOCH]),
            "metric": "val_accuracy",
            "val_metric": float(best[C.BEST_METRIC]),
            "test": {"test_accuracy": 0.93, "test_loss": 0.2},
            "final_train": {"train_accuracy": 0.99},
            "final_val": {"val_accuracy": 0.95},
        },
    )
    return str(directory)


def test_leaderboard_has_params_status_and_the_single_test_score(tmp_path):
    run = results.read_run(make_run(tmp_path / "r"))
    board = report.leaderboard(run["trials"], "val_accuracy", "max", 5, run["best"])
    assert list(board.columns[:5]) == [C.TRIAL_ID, C.STATUS, C.EPOCHS_COMPLETED, "best val_accuracy", "test accuracy"]
    assert {"lr", "optimizer", "model.width"} <= set(board.columns)
    assert board["best val_accuracy"].is_monotonic_decreasing
    assert board["test accuracy"].iloc[0] == 0.93 and board["test accuracy"].iloc[1:].isna().all()


def test_figures_are_written_and_not_blank(tmp_path):
    import matplotlib.image as mpimg

    written = report.write_report(make_run(tmp_path / "r"), str(tmp_path / "out"))
    assert set(written) == {*figures.FIGURES, report.REPORT_FILE}
    for name in figures.FIGURES:
        img = mpimg.imread(written[name])
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert float(img[..., :3].std()) > 0.05, f"{name} is blank"
    page = (tmp_path / "out" / report.REPORT_FILE).read_text()
    assert all(f"src='{name}'" in page for name in figures.FIGURES) and "Held-out test, once" in page


def test_importance_finds_the_one_parameter_that_matters(tmp_path):
    # no early stopping here: epochs run would otherwise tie the metric to the trial index
    run = results.read_run(make_run(tmp_path / "r", n_trials=30, asha=False))
    imp = figures.hp_importance(run["trials"])
    assert imp.index[0] == "lr" and imp["lr"] > 0.5 and imp.sum() == pytest.approx(1.0)
    assert figures.hp_importance(run["trials"].head(3)) is None  # too few trials to say anything


def test_importance_gives_noise_with_many_values_no_share_and_keeps_not_applicable_apart():
    rng = np.random.default_rng(0)
    n = 60
    width = rng.choice([64.0, 128.0, np.nan], size=n)  # NaN: the option that has no width
    trials = pd.DataFrame(
        {
            C.BEST_METRIC: np.where(np.isnan(width), 0.5, 0.9) + rng.normal(0, 0.01, n),
            C.HP_PREFIX + "model.width": width,
            C.HP_PREFIX + "noise": rng.uniform(0, 1, n),  # 60 distinct values, no effect
        }
    )
    imp = figures.hp_importance(trials)
    assert imp.index[0] == "model.width" and imp["model.width"] > 0.9 and imp["noise"] < 0.05


def test_asha_rungs():
    assert figures.asha_rungs({"budget": {"max_epochs": 9}, "asha": {"grace_period_epochs": 1, "reduction_factor": 3}}) == [1, 3]
    assert figures.asha_rungs({"budget": {"max_epochs": 20}, "asha": {"grace_period_epochs": 2, "reduction_factor": 3}}) == [2, 6, 18]
    assert figures.asha_rungs({"budget": {"max_epochs": 20}, "asha": {"enabled": False}}) == []


def test_compare_counts_compute_and_time_to_best(tmp_path):
    a = make_run(tmp_path / "asha", asha=True, seed=1)
    b = make_run(tmp_path / "fifo", asha=False, seed=1)
    sa, sb = report.run_summary(results.read_run(a)), report.run_summary(results.read_run(b))
    epochs_a = results.read_run(a)["epochs"]
    assert sa["worker_epochs"] == 2 * len(epochs_a)
    assert sb["worker_epochs"] == 2 * 12 * 9 and sa["worker_epochs"] < sb["worker_epochs"]
    assert sa["search"] == "random+asha" and sb["search"] == "random (fifo)"
    assert sb["cpu_seconds"] == pytest.approx(sum((9 + 1) for _ in range(12)) * 2 * 0.5)
    assert 0 < sa["seconds_to_within_0.5%"] <= sa["seconds_to_best"]
    text = report.format_compare([a, b])
    assert "worker_epochs" in text and "run1" in text and "against" in text


def test_cli_report_one_run_writes_html_and_two_runs_compare(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=2)
    b = make_run(tmp_path / "b", seed=3, asha=False)
    assert cli(["report", a, "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "report.html" in out and (tmp_path / "a" / report.REPORT_FILE).exists()
    assert cli(["report", a, b]) == 0
    assert "runs side by side" in capsys.readouterr().out
    # --out with two runs writes the comparison there: the table and best-so-far against compute
    assert cli(["report", a, b, "--out", str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / report.COMPARE_FILE).read_text()
    assert "worker_epochs" in page and (tmp_path / "cmp" / report.COMPARE_FIGURE).stat().st_size > 10_000


def test_hyperparameter_values_are_shown_literally(tmp_path):
    """A value with dollar signs is text, not mathtext: the figures render it as written."""
    import pandas as pd

    path = make_run(tmp_path / "r")
    trials = pd.read_parquet(f"{path}/{C.TRIALS_FILE}")
    trials["hp_tag"] = pd.array(["$x^2$", "a$b", "$$"] * (len(trials) // 3) + ["plain"] * (len(trials) % 3), dtype="string")
    results.write_frame(f"{path}/{C.TRIALS_FILE}", trials)
    written = report.write_report(path, str(tmp_path / "out"))
    assert (tmp_path / "out" / "hparams.png").stat().st_size > 10_000 and report.REPORT_FILE in written


def test_progress_line_counts_states_epochs_and_best(tmp_path):
    import io

    from distsearch.spec.model import parse_job
    from distsearch.sweep.progress import ProgressView

    from ..conftest import tiny_job

    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 5, "max_epochs": 3}))
    out = io.StringIO()
    asha = SimpleNamespace(stopped={"t2"})  # what the scheduler stopped; t4 ended short otherwise (a budget, a storage error)
    view = ProgressView(spec, interval_s=0.0, stream=out, scheduler=asha)
    trials = [SimpleNamespace(trial_id=f"t{i}", status=s) for i, s in enumerate(["RUNNING", "TERMINATED", "TERMINATED", "PENDING", "TERMINATED"])]
    view.on_trial_result(0, trials, trials[1], {C.EPOCH: 3, "val_accuracy": 0.91})
    view.on_trial_result(0, trials, trials[2], {C.EPOCH: 1, "val_accuracy": 0.5})
    view.on_trial_result(0, trials, trials[0], {C.EPOCH: 1, "val_accuracy": float("nan")})
    view.on_trial_result(0, trials, trials[4], {C.EPOCH: 2, "val_accuracy": 0.6})
    view.on_step_end(0, trials)
    line = out.getvalue().strip()
    assert "1 running, 1 pending, 1 done, 1 stopped early, 1 cancelled, 0 failed" in line, line
    assert "epochs 4/15" in line and "best val_accuracy 0.9100 (t1)" in line
    # Issue 29, case 12: without ASHA nothing is "stopped early"; trials a budget ended are cancelled.
    fifo = ProgressView(spec, interval_s=0.0, stream=io.StringIO(), scheduler=SimpleNamespace())
    fifo.on_trial_result(0, trials, trials[2], {C.EPOCH: 1, "val_accuracy": 0.5})
    assert "0 done, 0 stopped early, 3 cancelled" in fifo.line(trials)
    # A resumed sweep: the trials that ended under the first driver are counted, never listed by Tune.
    from distsearch.sweep.recording import PriorRun

    prior = PriorRun(
        epoch_rows=[{C.TRIAL_ID: "a", C.EPOCH: 1, "val_accuracy": 0.95}, {C.TRIAL_ID: "b", C.EPOCH: 3, "val_accuracy": 0.7}],
        ledger={"a": {C.ENDED_AT: 1.0}, "b": {C.ENDED_AT: 2.0}, "c": {C.ENDED_AT: 3.0, C.ERROR: "boom"}, "t0": {C.ENDED_AT: None}},
    )
    resumed = ProgressView(spec, interval_s=0.0, stream=io.StringIO(), scheduler=SimpleNamespace(stopped=set()), prior=prior)
    line = resumed.line([SimpleNamespace(trial_id="t0", status="RUNNING")])
    assert "1 running, 0 pending, 1 done, 1 stopped early, 0 cancelled, 1 failed" in line and "epochs 2/15" in line, line
    assert "best val_accuracy 0.9500 (a)" in line


def test_the_live_best_is_the_trial_the_selection_rule_picks(tmp_path):
    """Equal metrics (common on small validation splits) are told apart as the final pick does: the
    lower validation loss, then the earlier epoch. The first trial to reach 1.0 is not the pick."""
    import io

    from distsearch.spec.model import parse_job
    from distsearch.sweep.progress import ProgressView

    from ..conftest import tiny_job

    view = ProgressView(parse_job(tiny_job(tmp_path, budget={"num_trials": 3, "max_epochs": 3})), interval_s=0.0, stream=io.StringIO())
    trials = [SimpleNamespace(trial_id=f"t{i}", status="RUNNING") for i in range(3)]
    view.on_trial_result(0, trials, trials[0], {C.EPOCH: 1, "val_accuracy": 1.0, "val_loss": 0.30})
    view.on_trial_result(0, trials, trials[1], {C.EPOCH: 1, "val_accuracy": 1.0, "val_loss": 0.10})
    view.on_trial_result(0, trials, trials[2], {C.EPOCH: 1, "val_accuracy": 0.9, "val_loss": 0.01})
    view.on_trial_result(0, trials, trials[0], {C.EPOCH: 2, "val_accuracy": 1.0, "val_loss": 0.10})  # tied, but a later epoch
    assert view.best == (1.0, "t1")
    frame = pd.DataFrame(
        {C.TRIAL_ID: ["t0", "t1", "t2"], C.STATUS: [C.STATUS_COMPLETED] * 3, C.BEST_METRIC: [1.0, 1.0, 0.9], C.BEST_EPOCH: [1, 1, 1]}
    )
    epochs = pd.DataFrame({C.TRIAL_ID: ["t0", "t1", "t2"], C.EPOCH: [1, 1, 1], "val_loss": [0.30, 0.10, 0.01]})
    assert Objective("val_accuracy", "max").best_trial(frame, epochs)[C.TRIAL_ID] == "t1"  # the final pick agrees


# ---- the Parquet schema contract: a column change must come with a new schema version --------
SCHEMA_V1 = {
    C.TRIALS_FILE: {
        C.TRIAL_ID: "string",
        "hp_lr": "double",
        "hp_optimizer": "string",
        "hp_model": "string",
        "hp_model__width": "int64",
        C.STATUS: "string",
        C.EPOCHS_COMPLETED: "int64",
        C.BEST_METRIC: "double",
        C.BEST_EPOCH: "int64",
        C.LAST_METRIC: "double",
        C.STARTED_AT: "timestamp[us, tz=UTC]",
        C.ENDED_AT: "timestamp[us, tz=UTC]",
        C.WALL_SECONDS: "double",
        C.RELEASE_SECONDS: "double",
        C.ERROR: "string",
    },
    C.EPOCHS_FILE: {C.TRIAL_ID: "string", C.EPOCH: "int64", C.TIMESTAMP: "timestamp[us, tz=UTC]"},
}


def test_parquet_schema_matches_the_announced_version(tmp_path):
    import pyarrow.parquet as pq

    d = make_run(tmp_path / "r")
    assert C.SCHEMA_VERSION == "1", "schema version changed: update SCHEMA_V1 (and the README) with it"
    for name, expected in SCHEMA_V1.items():
        schema = pq.read_schema(f"{d}/{name}")
        assert schema.metadata[C.SCHEMA_VERSION_KEY] == C.SCHEMA_VERSION.encode()
        got = {f.name: str(f.type).replace("large_string", "string") for f in schema}
        if name == C.TRIALS_FILE:
            assert got == expected, f"trials.parquet columns changed without a schema version bump: {got}"
        else:  # epochs.parquet: fixed key columns first, then whatever the task reports
            assert list(got)[:3] == list(expected) and {k: got[k] for k in expected} == expected


def test_the_report_and_the_comparison_name_each_runs_searcher(tmp_path):
    tpe = {
        "algorithm": "tpe",
        "seed": 3,
        "settings_line": "10 startup trials, multivariate True, constant liar True",
        "told": {"complete": 4, "pruned": 8},
    }
    tpe["warm_start"] = {"runs": ["runs/a/1"], "trials": 5, "skipped": 2}
    a, b = make_run(tmp_path / "tpe", seed=1, search=tpe), make_run(tmp_path / "random", seed=2)
    text = report.format_run(results.read_run(a))
    assert "search: tpe+asha, seed 3, 10 startup trials, multivariate True, constant liar True; told complete 4, pruned 8" in text
    assert "warm start: 5 trials from 1 runs (2 skipped)" in text
    assert "search: random+asha" in report.format_run(results.read_run(b))
    compare = report.compare_runs([a, b])
    assert compare.loc["search"].tolist() == ["tpe+asha", "random+asha"]
    report.write_report(a)
    assert "search: tpe+asha" in (tmp_path / "tpe" / report.REPORT_FILE).read_text()


def test_no_tick_label_of_any_figure_prints_raw_mathtext(tmp_path):
    """Log axes (lr here) print plain numbers, never ``$\\mathdefault{10^{-3}}$``; and drawing the
    figures changes nothing in the caller's matplotlib."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    before = dict(matplotlib.rcParams)
    run = results.read_run(make_run(tmp_path / "r"))
    assert (run["trials"]["hp_lr"].max() / run["trials"]["hp_lr"].min()) >= 20  # the premise: hparams.png draws lr on a log axis
    labels = []
    for name, draw in [*figures.FIGURES.items(), ("compare", lambda r: figures.best_so_far([r]))]:
        fig = draw(run)
        FigureCanvasAgg(fig).draw()
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                labels += [(name, t.get_text()) for t in axis.get_ticklabels(which="both") if t.get_visible()]
    assert labels and not [label for label in labels if "$" in label[1]], [label for label in labels if "$" in label[1]][:5]
    assert any(ax.get_xscale() == "log" for ax in figures.hparams_vs_metric(run).axes)
    assert dict(matplotlib.rcParams) == before


def test_control_sequences_from_a_run_folder_never_reach_the_terminal(tmp_path, capsys):
    """Issue 29, case 13: a trial's error text with an OSC title change and an ANSI screen clear
    printed raw by ``distsearch report``."""
    d = make_run(tmp_path / "r")
    trials = pd.read_parquet(storage.join(d, C.TRIALS_FILE))
    trials.loc[0, C.STATUS] = C.STATUS_ERROR
    trials.loc[0, C.ERROR] = "Traceback\nRuntimeError: \x1b]0;pwned\x07\x1b[2J\x1b[31mred\x9b"
    results.write_frame(storage.join(d, C.TRIALS_FILE), trials)
    assert cli(["report", d]) == 0
    out = capsys.readouterr().out
    assert "error in" in out and "\\x1b]0;pwned\\x07" in out  # shown, as escapes
    assert not any(ord(ch) < 32 and ch != "\n" or 0x7F <= ord(ch) <= 0x9F for ch in out), repr(out)
