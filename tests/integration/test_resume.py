"""The driver is SIGKILLed, or interrupted with Ctrl-C (SIGINT), mid-sweep; the same `distsearch run`
command, run again, finishes the run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from distsearch import constants as C
from distsearch.results.files import read_run
from distsearch.spec.model import parse_job
from distsearch.train import store

from ..conftest import ROOT, images_job, text_job, tiny_job
from .conftest import check_run_files, end_session, own_ray_tmpdir, session_members, signal_session, stacks_of_hung_session

pytestmark = pytest.mark.integration


def _ledger(run: Path) -> dict:
    out = {}
    for f in (run / C.LEDGER_DIR).glob("*.json"):
        try:
            out[f.stem] = json.loads(f.read_text())
        except ValueError:
            pass  # read while being replaced
    return out


def _checkpointed_epochs(run: Path) -> dict:
    """Per trial, the epoch of the latest checkpoint Ray Train registered: where it resumes."""
    import logging

    from ray.train import Result

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "snapshot found" line per call
    out = {}
    for trial in (run / C.TRAIN_DIR).glob("*"):
        own = store.read_record(str(trial))  # a lone trial's own checkpoints (harness.trial_processes: trial_actor)
        if own is not None:
            if own:
                out[trial.name] = own[-1].epoch
            continue
        try:
            latest = Result.from_path(str(trial)).checkpoint
        except Exception:  # noqa: BLE001 - no snapshot yet, or one being rewritten while we poll
            continue
        if latest is not None:
            try:
                out[trial.name] = json.loads(Path(latest.path, C.CHECKPOINT_META_FILE).read_text())[C.EPOCH]
            except (OSError, ValueError):  # removed by Train's rotation, or being written, between the listing and the read
                continue
    return out


_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _end_leftovers(sid: int, timeout_s: float = 60) -> None:
    """Wait until the ended driver's Ray is gone, so storage holds all it will ever write.

    The driver runs in its own session, and its embedded Ray's processes with it. Its controller
    and workers may still write for a moment after the driver has exited; its dashboard and
    runtime-env agents never exit on their own: the session is ended. No process outside it is
    touched."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = session_members(sid)
        if all(cmd.startswith(_AGENTS) for cmd in left.values()):
            break
        time.sleep(0.2)
    end_session(sid)


@pytest.mark.parametrize(
    "stop, algorithm, task",
    # Two sweeps cover each stop (SIGKILL, SIGINT), each searcher (random, TPE) and each way a trial
    # trains (a lone worker in its trial actor with its own checkpoints, DDP in a Ray Train worker
    # group), on the two kinds of data whose resume rebuilds the most (text with its tokenizers, an
    # image folder): one case each, not all products. A table's run resumes in the disk-full test below.
    [
        (signal.SIGINT, "random", "text"),
        (signal.SIGKILL, "tpe", "images"),
    ],
    ids=["sigint-random-text", "sigkill-tpe-images"],
)
def test_killed_driver_resumes_with_the_same_command(tmp_path, request, stop, algorithm, task):
    # One ASHA rung, at epoch 4: the trial stopped at epoch 1-2 (or 3, had it reported one more
    # before the stop) has epochs left to train before ASHA may cut it; a trial past the rung trains
    # two more.
    common = {
        "budget": {"num_trials": 4, "max_epochs": 6},
        "asha": {"grace_period_epochs": 4, "reduction_factor": 2},
        "search": {"algorithm": algorithm, **({"startup_trials": 2} if algorithm == "tpe" else {})},
    }
    if task == "text":  # both checkpoints and the encoder; the text's tokens come from the driver that resumes too
        raw = text_job(tmp_path, request.getfixturevalue("shipped_data"), scaling={"num_workers": 1, "cpus_per_worker": 1}, **common)
        assert parse_job(raw).harness.trains_in_trial_actor
        # every sixth shipped docstring (over 20 per module): short epochs, and a SIGINT leaves no worker training on
        docs = pd.read_parquet(raw["task_options"]["path"])
        docs.iloc[::6].to_parquet(tmp_path / "docs.parquet")
        raw["task_options"]["path"] = str(tmp_path / "docs.parquet")
    else:  # the CNN alone (six epochs of ResNet-18 would be minutes here), on every third scan of each digit
        raw = images_job(tmp_path, request.getfixturevalue("shipped_data"), **common)
        raw["space"]["model"] = {"choice": {"cnn": {"depth": 1, "channels": 16, "width": 64}}}
        raw["task_options"]["path"] = str(_every_third_image(Path(raw["task_options"]["path"]), tmp_path / "images"))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "distsearch", "run", str(job), "--quiet"]
    with own_ray_tmpdir() as ray_tmpdir:  # each driver's Ray under this test's own temp dir
        _kill_and_resume(command, raw, stop, algorithm, ray_tmpdir)


def _every_third_image(folder: Path, out: Path) -> Path:
    """A copy of an image folder with every third file of each class folder."""
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        (out / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[::3]:
            (out / cls.name / f.name).write_bytes(f.read_bytes())
    return out


class _Evil:
    marker = ""

    def __reduce__(self):
        import os

        return (os.system, (f"echo pwned > {self.marker}",))


def _plant_hostile_tune_state(run: Path) -> Path:
    """Issue 29, cases 1 and 2: Tune's saved state is pickles (tuner.pkl, the searcher generators)
    and JSON whose trials carry CLOUDPICKLE fields; and Tune resumed no trial at all from an
    experiment state cut to half its size. Every such file of the killed run is replaced: each
    pickle by one that writes a marker, and the newest experiment state is cut in half. A resume
    builds from the ledger and the checkpoints, so no code runs and no trial is lost."""
    import pickle

    marker = run.parent / "pwned"
    _Evil.marker = str(marker)
    evil = pickle.dumps(_Evil())
    tune_dir = run / C.TUNE_DIR
    for f in tune_dir.iterdir():
        if f.is_file() and (f.suffix == ".pkl" or f.name.startswith(("search_gen_state-", "basic-variant-state-"))):
            f.write_bytes(evil)
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    assert states, "the killed run left no experiment state to cut"
    states[-1].write_bytes(states[-1].read_bytes()[: states[-1].stat().st_size // 2])
    (tune_dir / "tuner.pkl").write_bytes(evil)
    return marker


def _kill_and_resume(command, raw, stop, algorithm, ray_tmpdir):
    started = []
    try:
        _run_kill_and_resume(command, raw, stop, algorithm, started, ray_tmpdir)
    finally:  # a failed assertion must not leave a driver's Ray behind
        for sid in started:
            end_session(sid)


def _run_kill_and_resume(command, raw, stop, algorithm, started, ray_tmpdir):
    # As from a terminal: a shell without job control starts background commands (a CI runner's
    # included) with SIGINT ignored, and the driver rightly leaves an ignored SIGINT ignored.
    first = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        start_new_session=True,  # its own session: the test ends that session, and nothing else
    )
    started.append(first.pid)
    runs = Path(raw["storage"], "tiny")
    # Kill once a trial has ended and another is mid-training with a checkpoint on storage.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        run = next(iter(runs.glob("*")), None)
        if run is not None:
            ledger, ckpts = _ledger(run), _checkpointed_epochs(run)
            ended = {t for t, r in ledger.items() if r.get(C.ENDED_AT)}
            running = {t: e for t, e in ckpts.items() if t not in ended and 1 <= e <= 2}
            if ended and running:
                break
        assert first.poll() is None, first.communicate()[0]
        time.sleep(0.05)
    else:
        pytest.fail("no trial ended while another had checkpoints")
    if stop == signal.SIGKILL:
        # The driver and its embedded Ray at once, as an OOM kill of its container or a lost
        # machine ends them. A SIGKILL of the driver alone leaves its Train workers checkpointing
        # until they notice, for as many epochs as the machine's speed allows: the trial killed
        # mid-training could pass the rung, or end, and the resume this test is for not happen.
        signal_session(first.pid, signal.SIGKILL)
    else:
        first.send_signal(stop)
    out = first.communicate(timeout=60)[0]
    if stop == signal.SIGINT:  # a stop, not an end: released, unfinished, resumable, and it says so
        assert first.returncode == 130, out[-3000:]
        assert "distsearch: SIGINT: stopped the sweep" in out and "run the same command again to resume" in out, out[-3000:]
        assert "Tuner.restore" not in out and "held-out test" not in out
        assert not json.loads((run / C.RUN_FILE).read_text()).get("finished_at")
        assert not (run / C.BEST_FILE).exists()
    _end_leftovers(first.pid)
    # What storage holds now is all a new driver has: the ledger, and the Train checkpoints.
    ledger_before = _ledger(run)
    ended_before = {t for t, r in ledger_before.items() if r.get(C.ENDED_AT)}
    ckpt_before = _checkpointed_epochs(run)
    marker = _plant_hostile_tune_state(run)

    t0 = time.time()
    # faulthandler in the driver and its Ray workers: should the resumed run hang, the failure shows every thread's stack
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    second = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    started.append(second.pid)
    try:
        stdout, stderr = second.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        stacks = stacks_of_hung_session(second.pid, ray_tmpdir)
        stdout, stderr = second.communicate(timeout=30)
        unended = {t: r for t, r in _ledger(run).items() if not r.get(C.ENDED_AT)}
        pytest.fail(f"the resumed run ran past 400 s; trials not ended: {unended}\ndriver:\n{stderr[-20000:]}\nRay workers:\n{stacks}")
    finally:
        _end_leftovers(second.pid)
    assert second.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert not marker.exists(), "a pickle in Tune's saved state ran on resume"
    assert f"resuming run {run.name}" in stderr
    assert [p.name for p in runs.iterdir()] == [run.name]  # the same run, no new one

    result = check_run_files(run, parse_job(raw), expect_stopped=False, ended_before=ended_before)  # one row per trial, Tune agrees, epochs 1..n once
    trials, epochs = result["trials"], result["epochs"]
    assert len(trials) == raw["budget"]["num_trials"] and trials[C.TRIAL_ID].is_unique
    assert not epochs.duplicated([C.TRIAL_ID, C.EPOCH]).any()
    assert (trials[C.STATUS] != C.STATUS_ERROR).all(), trials[C.ERROR].dropna().tolist()
    after = epochs[epochs[C.TIMESTAMP] > pd.Timestamp(t0, unit="s", tz="UTC")]  # trained by the second driver
    # trials that had ended were not rerun: no epoch of theirs after the restart, same ledger end
    assert set(after[C.TRIAL_ID]).isdisjoint(ended_before)
    ledger_after = _ledger(run)
    for tid in ended_before:
        assert ledger_after[tid][C.ENDED_AT] == ledger_before[tid][C.ENDED_AT]
        assert trials.set_index(C.TRIAL_ID).loc[tid, C.EPOCHS_COMPLETED] == ledger_before[tid][C.LAST_REPORT][C.EPOCH]
    # unfinished trials went on right after their last checkpoint: nothing trained twice
    resumed = []
    for tid, ckpt_epoch in ckpt_before.items():
        if tid in ended_before:
            continue
        mine = after[after[C.TRIAL_ID] == tid]
        done = trials.set_index(C.TRIAL_ID).loc[tid, C.EPOCHS_COMPLETED]
        if len(mine):
            assert mine[C.EPOCH].min() == ckpt_epoch + 1, (tid, ckpt_epoch, sorted(mine[C.EPOCH]))
            resumed.append((tid, ckpt_epoch, mine[C.TIMESTAMP].min().timestamp() - t0))
        else:  # its last epoch was done, or ASHA (rungs refilled from the logged reports) cut it
            assert done == ckpt_epoch
    assert resumed, "no trial was left to resume"
    meta = read_run(run)["run"]
    assert len(meta["resumes"]) == 1 and meta["finished_at"]
    assert result["best"] is not None
    if algorithm == "tpe":  # the searcher knew every trial: each told once, as it ended
        told = meta["search"]["told"]
        statuses = trials[C.STATUS].value_counts().to_dict()
        assert told == {k: v for k, v in {"complete": statuses.get(C.STATUS_COMPLETED, 0), "pruned": statuses.get(C.STATUS_STOPPED, 0)}.items() if v}
        assert sum(told.values()) == raw["budget"]["num_trials"]
    for tid, ck, after_s in resumed:
        print(f"trial {tid}: last checkpoint epoch {ck}, epoch {ck + 1} reported {after_s:.1f} s after the second command started")
    print(
        f"killed with {len(ended_before)} trial(s) ended and {len(ckpt_before) - len(ended_before)} mid-training; second command "
        f"took {time.time() - t0:.1f} s; {len(epochs)} epoch rows checked, {len(after)} trained after the restart"
    )


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of its own, mounted for this test and unmounted after (needs root, as CI runs)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 2**20)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_disk_that_fills_mid_run_ends_in_exit_3_and_the_same_command_loses_no_trial(tmp_path, small_disk):
    """Issue 29, cases 2 and 8: the run's storage fills up mid-sweep (ENOSPC). The driver ends in one
    line naming the storage, exit 3; once space is freed the same command finishes the run, and
    every trial the ledger holds, and every trial with epoch rows, has its row in trials.parquet."""
    space = {"model": {"choice": {"mlp": {"depth": 1, "width": 16}}}, "lr": {"loguniform": [1.0e-3, 1.0e-1]}, "optimizer": "adam", "batch_size": 32}
    raw = tiny_job(tmp_path, space=space, budget={"num_trials": 2, "max_epochs": 4}, asha={"enabled": False}, max_concurrent_trials=1)
    raw["storage"] = str(small_disk)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "distsearch", "run", str(job), "--quiet"]
    started = []
    with own_ray_tmpdir():
        try:
            first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
            started.append(first.pid)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not any(
                e >= 2 for e in _checkpointed_epochs(next(iter((small_disk / "tiny").glob("*")), small_disk)).values()
            ):
                assert first.poll() is None, first.communicate()
                time.sleep(0.1)
            filler = _fill(small_disk)
            _, err = first.communicate(timeout=240)
            _end_leftovers(first.pid)
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert first.returncode == 3, err[-3000:]
            assert len(lines) == 1 and f"the storage {small_disk} failed" in lines[0] and "run the same command: it resumes" in lines[0], err[-3000:]
            filler.unlink()
            second = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
            started.append(second.pid)
            out, err = second.communicate(timeout=400)
        finally:
            for sid in started:
                end_session(sid)
    run = next(iter((small_disk / "tiny").glob("*")))
    assert second.returncode == 0 and f"resuming run {run.name}" in err, out[-2000:] + err[-3000:]
    result = read_run(str(run))
    trials, epochs = result["trials"], result["epochs"]
    assert set(epochs[C.TRIAL_ID]) <= set(trials[C.TRIAL_ID]) and set(_ledger(run)) <= set(trials[C.TRIAL_ID])
    assert len(trials) == 2 and trials[C.TRIAL_ID].is_unique
