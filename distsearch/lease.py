"""Which driver owns a run: an atomic takeover that holds on local disk and on object storage alike.

Object stores have no exclusive create that pyarrow exposes, so ownership is decided by claims
that every contender can read: each driver of a run has a generation (0 for the one that started
it, one more for each takeover). To own generation ``g``, a driver writes a claim object under
``drivers/<g>/``, waits ``SETTLE_S``, lists the folder and owns ``g`` only if its claim is the
earliest there by the *store's* modification time (then by name). Every contender orders the
same listing the same way, and one that writes after another has listed sees an earlier claim
than its own, because the wait is longer than the store's time resolution; so exactly one wins.
S3, GCS and local disks list what was written before, which is all this needs.

A driver is alive while its process is (same host: the pid exists *and* started when the claim
says, so a recycled pid or a container's PID 1 does not count) or, seen from elsewhere, while its
heartbeat in run.json (or, before its first one, its claim) is fresh.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Optional

import pyarrow.fs as pafs

from . import constants as C
from . import storage
from .errors import UserError

# How long a contender waits between writing its claim and reading all claims (seconds): longer
# than the coarsest store clock (S3 and GCS list modification times to the millisecond or second).
SETTLE_S = 2.0
# A driver on another host counts as gone once its heartbeat is this old (seconds): three beats.
HEARTBEAT_INTERVAL_S = 10.0
HEARTBEAT_STALE_S = 3 * HEARTBEAT_INTERVAL_S


class RunTaken(UserError, ValueError):
    """Another driver owns the run, or won the race to take it over."""


def _proc_start(pid: int) -> Optional[str]:
    """The kernel's start time of process ``pid`` with this boot's id (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = f.read().rsplit(")", 1)[1].split()[19]
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{f.read().strip()}:{ticks}"
    except (OSError, IndexError):
        return None


def me() -> dict[str, Any]:
    """This process as a driver: host, pid, its start time and a fresh claim id."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _proc_start(os.getpid()), "claim": uuid.uuid4().hex}


def _fresh(stamp: Optional[str], now: float) -> bool:
    return stamp is not None and now - datetime.fromisoformat(stamp).timestamp() <= HEARTBEAT_STALE_S


def alive(driver: dict[str, Any], heartbeat_at: Optional[str], now: Optional[float] = None) -> bool:
    """Whether ``driver`` (a ``me()`` record) still runs; ``heartbeat_at`` is its last beat (ISO)."""
    now = time.time() if now is None else now
    if driver.get("host") == socket.gethostname() and driver.get("pid"):
        pid = int(driver["pid"])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        recorded, actual = driver.get("process_start"), _proc_start(pid)
        if recorded and actual:
            return recorded == actual
    return _fresh(heartbeat_at, now)


def _claims(run_dir: str, generation: int) -> list[tuple[int, str, dict[str, Any]]]:
    """The claims of ``generation``: (store mtime in ns, name, claim), earliest first."""
    fs, base = storage.filesystem(storage.join(run_dir, C.DRIVERS_DIR, f"{generation:06d}"))
    found = [i for i in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)) if i.is_file and i.base_name.endswith(".json")]
    out = []
    for info in found:
        if info.base_name.startswith("."):
            continue  # a write in flight
        with fs.open_input_stream(info.path) as f:
            out.append((info.mtime_ns or 0, info.base_name, json.loads(f.readall())))
    return sorted(out, key=lambda c: (c[0], c[1]))


def latest_generation(run_dir: str) -> Optional[int]:
    """The newest generation anyone has claimed, or None for a run without claims."""
    fs, base = storage.filesystem(storage.join(run_dir, C.DRIVERS_DIR))
    try:
        found = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except FileNotFoundError:  # a rival's claim creating the folder while it is listed: no claim is complete yet
        return None
    gens = [int(i.base_name) for i in found if i.base_name.isdigit()]
    return max(gens, default=None)


def owner(run_dir: str, meta: dict[str, Any]) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(the driver that owns the run now, its last heartbeat): the winner of the newest generation,
    whose heartbeat is run.json's once it has written run.json, else its claim's time."""
    gen = latest_generation(run_dir)
    if gen is None:  # a run from before claims existed: run.json's driver
        return meta.get("driver"), meta.get("heartbeat_at") or meta.get("started_at")
    claims = _claims(run_dir, gen)
    if not claims:
        return None, None
    mtime_ns, _, claim = claims[0]
    if (meta.get("driver") or {}).get("claim") == claim["claim"]:
        return claim, meta.get("heartbeat_at")
    return claim, datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc).isoformat()


def describe(driver: Optional[dict[str, Any]]) -> str:
    d = driver or {}
    return f"pid {d.get('pid')} on {d.get('host')}"


def take(run_dir: str, driver: dict[str, Any], meta: Optional[dict[str, Any]] = None, settle_s: Optional[float] = None) -> int:
    """Make ``driver`` the owner of the run at ``run_dir``: the next generation's claim, written,
    settled and checked. ``meta`` is the run's run.json (None for a new run). Returns the
    generation won; raises ``RunTaken`` naming the driver that owns the run instead."""
    gen = latest_generation(run_dir)
    if gen is not None and not _claims(run_dir, gen):
        mine = gen  # its first claim is still being written: contend for the same generation
    else:
        if meta is not None or gen is not None:
            current, beat = owner(run_dir, meta or {})
            if current is not None and alive(current, beat):
                raise RunTaken(f"its driver ({describe(current)}) is still running")
        mine = 0 if gen is None else gen + 1
    claim(run_dir, driver, mine, SETTLE_S if settle_s is None else settle_s)
    return mine


def claim(run_dir: str, driver: dict[str, Any], generation: int, settle_s: float) -> None:
    """Claim ``generation`` of the run for ``driver``: write, wait ``settle_s``, and raise
    ``RunTaken`` unless this claim is the earliest of the generation."""
    storage.write_json(storage.join(run_dir, C.DRIVERS_DIR, f"{generation:06d}", f"{driver['claim']}.json"), {**driver, "claimed_at": _now()})
    time.sleep(settle_s)
    winner = _claims(run_dir, generation)[0][2]
    if winner["claim"] != driver["claim"]:
        raise RunTaken(f"another driver ({describe(winner)}) took it over at {winner.get('claimed_at')}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
