import os
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import ray

from distsearch import constants as C
from distsearch.results.files import read_run
from distsearch.sweep import cleanup


@pytest.fixture(scope="session", autouse=True)
def _session_ray_tmpdir():
    """Every Ray this test session starts, embedded or by a subprocess, lives under a temp dir of
    its own unless a fixture gives it a narrower one: none is found by, or shares files with, a Ray
    the machine runs beside the tests.

    Each also has the session's own token: Ray 2.60 turns token authentication on for a new local
    cluster (``ray.init``) and for ``ray start`` where a token exists, and reads it from
    ~/.ray/auth_token unless told otherwise. A fresh machine has none there, and the tests neither
    write to the user's home nor depend on what an earlier run left in it."""
    with own_ray_tmpdir() as path, pytest.MonkeyPatch.context() as env:
        token = Path(path, "auth_token")
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        env.delenv("RAY_AUTH_TOKEN", raising=False)  # Ray would take it before the path
        env.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        yield


@pytest.fixture(scope="session")
def embedded_ray():
    """A small real Ray for the tests that sweep in this process: 2 CPUs, like the developer
    machines; no dashboard; under its own temp dir, so that nothing it starts or finds
    (``address="auto"``) is another Ray's. One for the session, not one per module: each start
    and shutdown cost seconds of a 2-CPU machine's time, and every test that uses it ends what its
    sweep started (``assert_nothing_left``). The tests that use it run last (below), after those
    that start their own Ray, a head or a cluster in this process or in drivers of their own."""
    with own_ray_tmpdir():
        ray.init(num_cpus=2, include_dashboard=False)
        try:
            yield
        finally:
            ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """The tests on the session's embedded Ray last, each group in its collected order: from the
    first of them on, that Ray lives in this process until the session ends."""
    items.sort(key=lambda item: "embedded_ray" in getattr(item, "fixturenames", ()))


class own_ray_tmpdir:
    """``RAY_TMPDIR`` set to a new, short directory (a Unix socket path has a length limit) while the
    block runs, for this process and the processes it starts; put back and removed after it."""

    def __enter__(self) -> str:
        self.before = os.environ.get("RAY_TMPDIR")
        self.path = tempfile.mkdtemp(prefix="dsray-", dir="/tmp")
        os.environ["RAY_TMPDIR"] = self.path
        return self.path

    def __exit__(self, *exc) -> None:
        if self.before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = self.before
        shutil.rmtree(self.path, ignore_errors=True)


def session_members(sid: int) -> dict[int, str]:
    """The live processes of session ``sid``: pid -> command line. A session, not a process group:
    Ray starts each of its workers in a process group of its own, in the session of the node
    that started it."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found[int(proc.name)] = cmd
    return found


def stacks_of_hung_session(sid: int, ray_tmpdir: str, limit_chars: int = 40_000) -> str:
    """Every thread's stack in each Python process of session ``sid`` (a driver started with
    ``PYTHONFAULTHANDLER=1``, and the Ray workers it started, which inherit it), for a test whose
    driver ran past its timeout: SIGABRT makes faulthandler print them, the workers' into their
    Ray log files under ``ray_tmpdir``, and ends the processes. The driver's own dump is on its
    stderr, which the caller reads."""
    for pid, cmd in session_members(sid).items():
        if cmd.startswith("ray::") or "python" in cmd.split(" ", 1)[0]:
            try:
                os.kill(pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
    time.sleep(3)
    dumps = []
    for log in sorted(Path(ray_tmpdir).glob("**/logs/*.err")):
        text = log.read_text(errors="replace")
        at = text.find("Fatal Python error")
        if at >= 0:
            dumps.append(f"--- {log.name}\n{text[at:]}")
    return "\n".join(dumps)[-limit_chars:]


def signal_session(sid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of session ``sid``."""
    for pid in session_members(sid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def end_session(sid: int, term_grace_s: float = 3.0, kill_wait_s: float = 15.0) -> None:
    """End session ``sid``, which a test started (``start_new_session=True``): SIGTERM, then
    SIGKILL for what is left after ``term_grace_s``. Nothing outside that session is touched.

    The grace is short because some of a Ray node's processes (one of its servers and a Python
    monitor) do not exit on SIGTERM at all: a longer one was only ever waited out in full, at
    every head and every killed driver."""
    for sig, wait_s in ((signal.SIGTERM, term_grace_s), (signal.SIGKILL, kill_wait_s)):
        if not session_members(sid):
            return
        signal_session(sid, sig)
        deadline = time.monotonic() + wait_s
        while session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.2)


def live_job_placement_groups() -> list[str]:
    job = ray.get_runtime_context().get_job_id()
    return [pg for pg, info in ray.util.placement_group_table().items() if pg.endswith(job) and info["state"] != "REMOVED"]


def assert_nothing_left():
    """No placement group of this job and no Ray Train actor is alive (GCS view, no dashboard)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (live_job_placement_groups() or cleanup.live_train_actors()):
        time.sleep(0.2)
    assert live_job_placement_groups() == []
    assert cleanup.live_train_actors() == []


def check_run_files(run_dir, spec, expect_stopped=True, ended_before=frozenset()):
    """Parquet rows match Tune's own record of the trials one for one; returns the run. A resumed
    run's last Tune experiment lists the trials its last driver ran: all but ``ended_before``."""
    from ray.tune import ExperimentAnalysis

    run = read_run(run_dir)
    trials, epochs = run["trials"], run["epochs"]
    analysis = ExperimentAnalysis(f"{run_dir}/{C.TUNE_DIR}")
    tune_trials = {t.trial_id: t for t in analysis.trials}
    assert sorted(set(trials[C.TRIAL_ID]) - set(ended_before)) == sorted(tune_trials)
    assert len(trials) == spec.budget.num_trials
    for _, row in trials.iterrows():
        if row[C.TRIAL_ID] not in tune_trials:
            continue
        t = tune_trials[row[C.TRIAL_ID]]
        last_epoch = (t.last_result or {}).get(C.EPOCH, 0)
        assert row[C.EPOCHS_COMPLETED] == last_epoch
        assert (row[C.STATUS] == C.STATUS_ERROR) == (t.status == "ERROR")
        mine = epochs[epochs[C.TRIAL_ID] == row[C.TRIAL_ID]]
        assert sorted(mine[C.EPOCH]) == list(range(1, last_epoch + 1))
        if last_epoch:
            assert mine[spec.metric].iloc[-1] == pytest.approx(t.last_result[spec.metric])
    assert not epochs.duplicated([C.TRIAL_ID, C.EPOCH]).any()
    if expect_stopped:
        assert (trials[C.STATUS] == C.STATUS_STOPPED).sum() >= 1
    return run


def max_overlap(trials) -> int:
    """The most trials that were running at the same instant."""
    events = sorted([(t, 1) for t in trials[C.STARTED_AT].dropna()] + [(t, -1) for t in trials[C.ENDED_AT].dropna()], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(imgs.map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, h: i.naturalHeight})));
  document.body.appendChild(out);
});
</script>
"""


def check_report_in_browser(report_html, tmp_path) -> list[dict]:
    """Open ``report_html`` in headless Chromium (with a probe script added to a copy beside it)
    and return, per <img>, whether it loaded; also screenshot the page. Fails if Chromium is
    missing: .ci/run installs it."""
    import json
    import re
    import shutil
    import subprocess
    from pathlib import Path

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert browser, "headless Chromium is needed for this test: apt-get install chromium (.ci/run does)"
    report_html = Path(report_html)
    probe = report_html.with_name("probe.html")
    probe.write_text(report_html.read_text().replace("</body>", PROBE + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=10000",
    ]
    dom = subprocess.run([browser, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, flags=re.S)
    assert found, f"the probe did not run: {dom.stderr[-2000:]}"
    images = json.loads(found.group(1).replace("&quot;", '"'))
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1200,3000", f"--screenshot={shot}", report_html.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    return images


def assert_export_matches(run_dir, raw, out_dir, ensemble=False, max_abs=1e-4):
    """``distsearch export``'s ONNX model, run by onnxruntime on ``raw`` inputs encoded as
    preprocessing.json says, predicts what ``load_model`` predicts (issue 32: within 1e-4)."""
    import numpy as np

    from distsearch.select.export import export_model, onnx_predictions
    from distsearch.select.load import load_model

    model = load_model(run_dir, ensemble=ensemble)
    written = export_model(str(run_dir), str(out_dir), ensemble=ensemble)
    assert {"model.onnx", "preprocessing.json"} <= set(written["files"])
    x = model.encode(raw) if model.encode is not None else raw
    diff = float(np.abs(onnx_predictions(str(out_dir), x) - model.predict_proba(raw)).max())
    assert diff <= max_abs, diff
    return model
