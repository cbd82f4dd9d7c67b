"""Where a job's CPU goes: the CPU seconds of each kind of Ray process, split into starting up and working.

Runs one job as a user would (``distsearch run``, embedded Ray, default ``jobs/quickstart.yaml``)
and, meanwhile, reads every ``ray::`` process's CPU seconds from ``/proc`` every
``--interval-s``. A Ray worker process starts as ``ray::IDLE`` (importing Ray, and for a Train
worker distsearch's setup hook: torch, ``torch._dynamo`` and Ray Train) and is renamed after the
actor it is handed (``ray::RayTrainWorker``, ``ray::SynchronizationActor``, ...). Per kind: how
many processes, the CPU seconds each had spent when it was first seen with its actor's name
(start), and in all; for Train workers, all minus start is the training loop and its reports.

    python benchmarks/processes.py [job.yaml] [--interval-s 0.5] [--out processes.parquet]
    python benchmarks/processes.py smoke     # the quickstart with 2 trials of 1 epoch, no record

Linux only (``/proc``). Sampling misses processes that live shorter than the interval and up
to one interval of each process's last CPU, so totals are slightly low. About 3 minutes on 2
cores for the quickstart (Intel Xeon with AVX-512, 2026-12-02).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine_line, markdown, run_cli, run_recorded  # noqa: E402

IDLE = "ray::IDLE"


def _ray_processes() -> dict[int, tuple[str, float]]:
    """pid -> (process title up to the first '.', CPU seconds so far) of every ``ray::`` process."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            title = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not title.startswith("ray::"):
                continue
            stat = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            found[int(name)] = (title.split(".")[0].split(" ")[0], (int(stat[11]) + int(stat[12])) / tick)
        except (OSError, ValueError, IndexError):
            continue  # ended between listing and reading
    return found


class Sampler(threading.Thread):
    """Keeps, per pid, the first CPU reading under a non-idle title and the last reading."""

    def __init__(self, interval_s: float):
        super().__init__(daemon=True)
        self.interval_s, self.stop = interval_s, threading.Event()
        self.kind: dict[int, str] = {}
        self.start_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            for pid, (title, cpu) in _ray_processes().items():
                self.last_cpu[pid] = cpu
                if title != IDLE and pid not in self.start_cpu:
                    self.kind[pid], self.start_cpu[pid] = title, cpu
                self.kind.setdefault(pid, title)
            self.stop.wait(self.interval_s)

    def table(self) -> pd.DataFrame:
        rows = [
            {"process": self.kind[pid], "start_cpu_s": self.start_cpu.get(pid, self.last_cpu[pid]), "cpu_s": self.last_cpu[pid]}
            for pid in self.last_cpu
        ]
        df = pd.DataFrame(rows)
        g = df.groupby("process")
        out = pd.DataFrame(
            {"processes": g.size(), "start_cpu_s_each": g["start_cpu_s"].median(), "start_cpu_s": g["start_cpu_s"].sum(), "cpu_s": g["cpu_s"].sum()}
        )
        out["working_cpu_s"] = out["cpu_s"] - out["start_cpu_s"]
        out["share_of_all"] = out["cpu_s"] / out["cpu_s"].sum()
        return out.sort_values("cpu_s", ascending=False).reset_index()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "job", nargs="?", default=str(ROOT / "jobs" / "quickstart.yaml"), help="a job file; smoke: the quickstart with 2 trials of 1 epoch, no record"
    )
    ap.add_argument("--interval-s", type=float, default=0.5)
    ap.add_argument("--out", default="processes.parquet")
    args = ap.parse_args()
    if not Path("/proc/self/stat").exists():
        ap.error("needs Linux's /proc")
    smoke = args.job == "smoke"
    if smoke:
        args.job, args.out = str(ROOT / "jobs" / "quickstart.yaml"), str(Path(tempfile.gettempdir(), "processes-smoke.parquet"))
    print(machine_line(), flush=True)
    raw = yaml.safe_load(Path(args.job).read_text())
    if smoke:
        raw["budget"] = {**raw["budget"], "num_trials": 2, "max_epochs": 1}
        raw["asha"] = {**raw.get("asha", {}), "grace_period_epochs": 1}
    sampler = Sampler(args.interval_s)
    with tempfile.TemporaryDirectory() as d:
        raw["storage"] = str(Path(d) / "runs")
        sampler.start()
        run, wall = run_cli(raw, Path(d), "r")
        sampler.stop.set()
        sampler.join()
    table = sampler.table()
    table.to_parquet(args.out, index=False)
    trials = run["trials"]
    print(
        f"\n{raw['name']}: {len(trials)} trials, sweep {run['run']['sweep_wall_seconds']:.1f} s, command {wall:.1f} s, "
        f"machine CPU seconds {run['machine_cpu_seconds']:.0f}\n"
    )
    print(markdown(table))
    print(f"\nfigures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_recorded("processes", main, "processes.parquet"))
