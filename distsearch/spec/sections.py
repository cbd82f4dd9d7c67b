"""The job spec's sections: budget, ASHA, scaling, checkpointing, selection, ensemble, search and harness.

Each field carries its unit and its bounds in its description, which docs/job-spec.md shows.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import registry


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Section):
    num_trials: int = Field(16, ge=1, le=100_000, description="trials sampled from the space (count, >= 1)")
    max_epochs: int = Field(10, ge=1, le=100_000, description="epochs a trial trains at most (count, >= 1); ASHA's max_t")
    max_failed_trials: Optional[int] = Field(
        None, ge=0, description="failed trials the sweep tolerates (count, >= 0); one more ends it, results so far written; unset: no limit"
    )
    time_s: Optional[float] = Field(
        None, gt=0, allow_inf_nan=False,
        description="wall seconds the sweep may take, counted from its driver's start (seconds, > 0); after it no trial starts, "
        "running ones are cancelled and recorded as such, and the results so far are written; unset: no limit",
    )  # fmt: skip
    worker_epochs: Optional[int] = Field(
        None, ge=1, le=100_000_000,
        description="epochs the sweep may train, each counted once per worker of its trial and summed over the trials, "
        "earlier drivers' included (worker-epochs, >= 1); once spent, no trial starts, running ones are cancelled and recorded "
        "as such, and the results so far are written: a budget of compute rather than of trials, which num_trials then only "
        "caps; unset: no limit",
    )  # fmt: skip
    trial_timeout_s: Optional[float] = Field(
        None, gt=0, allow_inf_nan=False,
        description="wall seconds one trial may run from its start (seconds, > 0); a trial past it is ended, recorded as an error "
        "that says it timed out, its worker group released, and the sweep goes on; unset: no limit",
    )  # fmt: skip


class Asha(_Section):
    enabled: bool = Field(True, description="true: ASHA stops weak trials early; false: every trial runs max_epochs (FIFO random search)")
    grace_period_epochs: int = Field(1, ge=1, description="epochs every trial runs before ASHA may stop it (count, 1..max_epochs)")
    reduction_factor: float = Field(3.0, ge=2, description="ASHA keeps 1/reduction_factor of trials at each rung (ratio, >= 2)")
    brackets: int = Field(1, ge=1, le=10, description="ASHA brackets (count, 1..10); with variant promote, Hyperband's brackets")
    variant: str = Field(
        "asha",
        description="which successive halving stops trials at the rungs: asha (Tune's ASHA, up to max_epochs), pasha "
        "(ASHA whose maximum starts at the second rung and grows a rung only while the top two rungs rank trials differently) or promote "
        "(ASHA with promotion: a trial pauses at each rung and a free slot resumes it from its checkpoint once it is in the top "
        "1/reduction_factor of its rung, else starts a new trial; brackets > 1 deals trials to Hyperband's brackets in turn)",
    )

    @field_validator("variant")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in registry.SCHEDULERS or v in registry.CHOSEN_SCHEDULERS:
            variants = [k for k in registry.SCHEDULERS if k not in registry.CHOSEN_SCHEDULERS]
            raise ValueError(f"asha.variant: got {v!r}; fix: use one of {', '.join(variants)} (asha.enabled: false runs every trial to max_epochs)")
        return v


class Scaling(_Section):
    num_workers: int = Field(2, ge=1, le=4096, description="DDP workers per trial (count, >= 1)")
    cpus_per_worker: float = Field(1.0, ge=0.01, description="CPUs reserved per worker (CPUs, >= 0.01; fractions pack trials)")
    use_gpu: bool = Field(False, description="train on CUDA with NCCL (true) or on CPU with gloo (false)")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs reserved per worker (GPUs, > 0 when use_gpu; fractions only with 1 worker)")

    @model_validator(mode="after")
    def _gpu_consistent(self) -> "Scaling":
        if self.use_gpu and self.gpus_per_worker == 0:
            raise ValueError("scaling.gpus_per_worker: got 0 with use_gpu: true; set gpus_per_worker: 1 (or a fraction with num_workers: 1)")
        if not self.use_gpu and self.gpus_per_worker > 0:
            raise ValueError(f"scaling.gpus_per_worker: got {self.gpus_per_worker} with use_gpu: false; set use_gpu: true or gpus_per_worker: 0")
        if self.use_gpu and self.num_workers > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise ValueError(
                f"scaling.gpus_per_worker: got {self.gpus_per_worker} with num_workers: {self.num_workers}; NCCL cannot put two ranks "
                "on one device, so multi-worker trials need whole GPUs: set gpus_per_worker: 1, or num_workers: 1 to pack fractions"
            )
        return self


class Checkpointing(_Section):
    num_to_keep: int = Field(
        2,
        ge=1,
        description="checkpoints kept per trial (count, >= 1): the best epoch under the selection rule (the metric, then the lower val_loss, then the earlier epoch) and those after it, plus the latest, which Ray Train always keeps for resuming",
    )
    keep_after_sweep: Literal["selected", "all"] = Field(
        "selected",
        description="what stays in train/ once the selected models are saved: selected (the single best's and the ensemble "
        "members' checkpoints without optimizer state, and every checkpoint of a trial that may still resume) or all "
        "(every checkpoint as the sweep left it)",
    )


class Selection(_Section):
    smoothing_epochs: int = Field(
        1, ge=1, le=100,
        description="the trials and the epoch of each that selection picks (the single best, the ensemble's candidates, the "
        "checkpoints kept) are ranked by the trailing mean of the metric over this many epochs, the epoch's own and those "
        "before it, so that a one-epoch spike on a small validation split does not win (count, 1..100; 1: the epoch's own value)",
    )  # fmt: skip
    checkpoints_per_trial: int = Field(
        1, ge=1, le=100,
        description="ensemble candidates per top trial: its best kept checkpoints under the selection rule, up to this many "
        "(count, 1..100; at most checkpointing.num_to_keep + 1, what a trial keeps)",
    )  # fmt: skip
    refit: bool = Field(
        False,
        description="true: the selected models (the single best, and each ensemble member) are trained again from their "
        "recipe and seed on the train and validation splits together, for the epochs selection picked, in the driver "
        "process (on its GPU where it has one), and the refit models are scored on the test split and saved; false: the "
        "selected checkpoints are",
    )


class Ensemble(_Section):
    enabled: bool = Field(
        True,
        description="after the sweep, select an ensemble of the best trials' best checkpoints on the validation split "
        "(greedy forward selection with replacement) and score it once on the test split beside the single best (true), "
        "or keep the single best only (false)",
    )
    top_trials: int = Field(
        8, ge=1, le=100, description="candidates: the best trials by the job's metric, each at its best checkpoint (count, 1..100)"
    )
    rounds: int = Field(
        20, ge=1, le=1000, description="selection rounds: members added, with replacement, before the best-scoring prefix is kept (count, 1..1000)"
    )


class Search(_Section):
    algorithm: str = Field(
        "random",
        description="who proposes each trial's parameters: one of the registered searchers (distsearch.registry): random "
        "(Tune's random sampling; the default: on the simulator's evidence no model-based searcher under ASHA beat it on "
        "most shipped tables, docs/simulate.md), tpe (Optuna's TPE, which learns from ended trials, told which ASHA stopped and at which "
        "epoch), bohb (TPE fitted on the values at the highest rung with startup_trials results, a third of proposals "
        "random) or gp (as bohb, with Optuna's Gaussian process in place of TPE); the seed is the job's seed",
    )
    startup_trials: Optional[int] = Field(
        None,
        ge=1,
        le=100_000,
        description="tpe: trials drawn at random before TPE models the results; bohb and gp: results a rung needs before it is "
        "modelled (count, >= 1; unset: a third of budget.num_trials, at least 2 and at most 10, so that TPE models the rest)",
    )
    multivariate: bool = Field(
        True, description="tpe: model the parameters jointly, grouped by conditional sub-space (true), or each on its own (false)"
    )
    constant_liar: bool = Field(
        True, description="tpe: count running trials as bad results while sampling, so that trials running at once spread out (true)"
    )
    warm_start: list[str] = Field(
        default_factory=list,
        description="tpe: earlier runs (run directories or URIs) of a job with the same metric whose trials seed the searcher; "
        "trials whose parameters do not fit this space are skipped and counted",
    )
    points_to_evaluate: list[dict[str, Any]] = Field(
        default_factory=list,
        description="tpe: configurations to run first, with flat names as in trials.parquet (model.depth); parameters left out are sampled",
    )

    @field_validator("algorithm")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in registry.SEARCHERS:
            raise ValueError(f"search.algorithm: got {v!r}; fix: use one of {', '.join(registry.SEARCHERS)}")
        return v


#: How a trial gets its processes, from Ray's own path to the most reuse; see ``Harness.trial_processes``.
TRIAL_PROCESSES = ("ray", "controller_in_trial", "reused_actor", "kept_worker_group", "trial_actor")
# The three booleans that ``trial_processes`` replaced, refused with the value they meant.
_OLD_HARNESS_KEYS = ("train_controller", "reuse_trial_actors", "reuse_worker_groups")


class Harness(_Section):
    """Knobs of the Ray harness itself, not of the model. The defaults suit small trials."""

    # The controller takes one report per worker per poll, and a worker whose checkpoints upload
    # asynchronously trains on while its reports queue: with epochs shorter than the interval, a
    # trial ends one interval per queued report after its last epoch, its slot idle meanwhile,
    # and ASHA's stops come as late. Each poll is a small call to every worker; at this interval
    # the integration tests, whose epochs are longer, ran no slower than at 0.05 or 0.1.
    report_poll_interval_s: float = Field(
        0.02,
        gt=0,
        le=60,
        description="how often Ray Train's controller takes a report from each worker (seconds, 0..60; Ray's default is 2.0: "
        "epochs shorter than the interval queue their reports, and the trial ends that much later); sets RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
    )
    worker_start_timeout_s: float = Field(
        60.0, gt=0, description="how long a trial's worker group may wait for resources before the attempt fails (seconds, > 0)"
    )
    worker_start_attempts: int = Field(
        2, ge=1, le=100, description="attempts to start a trial's worker group before the trial fails (count, >= 1; Ray's default is unlimited)"
    )
    max_worker_failures: int = Field(0, ge=0, description="times a trial restarts from its last checkpoint after a worker dies (count, >= 0)")
    release_timeout_s: float = Field(10.0, gt=0, description="how long the driver waits for a finished trial's worker group to go (seconds, > 0)")
    checkpoint_upload: Literal["async", "sync"] = Field(
        "async",
        description="how rank 0's checkpoint is copied to storage: async (in Ray Train's upload thread while the next epoch "
        "trains) or sync (the report waits for the copy; Ray's default)",
    )
    trial_processes: Literal["auto", "ray", "controller_in_trial", "reused_actor", "kept_worker_group", "trial_actor"] = Field(
        "auto",
        description="how a trial gets its processes: "
        "ray (Ray's own path: a new Tune actor per trial, whose Ray Train controller is an actor of its own); "
        "controller_in_trial (the controller runs inside the trial's Tune actor: one process and one report-queue actor "
        "fewer per trial); reused_actor (as controller_in_trial, and Tune runs the next trial in the actor of one that "
        "ended, which first ends the old trial's worker group itself); kept_worker_group (as reused_actor, and the actor "
        "keeps its Train worker group, its processes, sync actor and placement group, for its next trial, so that a trial "
        "starts no new process: a trial that ends asks its workers to stop at their next report (a lone worker: at its "
        "next batch) and waits up to release_timeout_s / 2 for them, else ends the group as Ray Train does); "
        "trial_actor (one worker only, and max_worker_failures 0: the trial trains in its Tune actor itself, which holds "
        "the worker's resources and serves the next trial, with no Ray Train run, worker process or placement group of "
        "its own; it keeps its own checkpoints, in Ray Train's layout, and a trial whose actor dies fails); "
        "auto (the default: trial_actor for trials of one worker with max_worker_failures 0, else kept_worker_group)",
    )
    spare_worker_keep_alive_s: Optional[float] = Field(
        None,
        ge=0,
        le=86_400,
        description="spare worker processes that import torch and distsearch ahead of time, so that a trial's Train "
        "worker starts in one instead of in a new process: the driver has its node's Ray start the first trials' spares "
        "before Tune starts, and each Train worker, as it starts, has its node's Ray start one for the trial after its "
        "own. Ray keeps an unused spare at least this long and ends it with the job (seconds, 0..86400; 0: no spares, "
        "Ray's default; unset: 600, but for the later trials' spares only when the trials at full concurrency leave a "
        "CPU of the cluster free for them to start on and trial_processes is not kept_worker_group, else 0; none with "
        "trial_processes: trial_actor, whose trials start no worker process)",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_keys_name_the_new_field(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data for k in _OLD_HARNESS_KEYS):
            return data
        if data.get("train_controller") == "actor":
            value = "ray"
        elif data.get("reuse_trial_actors") is False:
            value = "controller_in_trial"
        elif data.get("reuse_worker_groups") is False:
            value = "reused_actor"
        else:
            value = "kept_worker_group"
        old = ", ".join(f"harness.{k}: {json.dumps(data[k])}" for k in _OLD_HARNESS_KEYS if k in data)
        raise ValueError(f"{old}: these keys were replaced by one field; fix: remove them and write harness.trial_processes: {value}")

    @property
    def controller_in_trial(self) -> bool:
        """Whether each trial's Ray Train controller runs inside its Tune actor."""
        return self.trial_processes not in ("ray", "trial_actor")

    @property
    def reuses_trial_actors(self) -> bool:
        """Whether Tune runs the next trial in the actor of one that ended."""
        return self.trial_processes in ("reused_actor", "kept_worker_group", "trial_actor")

    @property
    def trains_in_trial_actor(self) -> bool:
        """Whether a trial trains in its Tune actor itself, with no Ray Train run (distsearch.train.lone)."""
        return self.trial_processes == "trial_actor"

    @property
    def reuses_worker_groups(self) -> bool:
        """Whether a trial actor keeps its worker group for its next trial (distsearch._ray.warm)."""
        return self.trial_processes == "kept_worker_group"

    @property
    def settle_wait_s(self) -> float:
        """How long a kept group's end waits for its workers to stop (at their next report, a lone one at its next batch; seconds)."""
        return self.release_timeout_s / 2
