"""Ray's private API, behind one door: every touch point distsearch makes, listed with its reason.

Nothing else in the package names a name under ``ray._private`` or an ``_internal`` module, an
underscore attribute of a Ray object, raw raylet RPC or an internal resource name;
``tests/unit/test_private_api.py`` fails if a module outside this package does. Each touch point
is tied to the Ray version pinned in ``pyproject.toml`` (``PINNED_RAY_VERSION``). On any other Ray
(``VOUCHED`` false) distsearch still imports, and each touch point switches itself off: the
optional ones (spares, the early coordinator, the head-node pin, the credential filter, the GCS
leak census, the early end of the local monitor) do nothing, and the ones a mode needs (the in-trial controller and kept worker
groups, resuming a run) raise ``NotVouched`` with the fix. Validation refuses those modes first
(``harness.trial_processes`` other than ``ray`` and ``trial_actor``), so on another release a job
runs on Ray's own public path, or trains each one-worker trial in its Tune actor.

The inventory (module: what it does; why no public route serves; upstream issue):

``train`` (Ray Train V2 internals)
  - ``lean_trainer_cls``: a ``TorchTrainer`` without ``PlacementGroupCleanerCallback`` and
    ``DatasetsCallback``, and with its ``TrainController`` run in the trial's own process
    (``_initialize_and_run_controller``). Ray Train has no option to skip default callbacks or
    to run the controller in-process; the cleaner only works with the dashboard up
    (ray-project/ray#54305, #65443, #65881).
  - ``run_until_aborted``: ``controller.run()`` that a trial can cancel without ending its
    actor (raising ``RunAborted``): ``TrainController.abort()`` calls ``exit_actor()``. Uses the
    controller's ``_controller_callback_manager`` and ``_set_state(AbortedState())``. No public
    route. ``Abort`` is the flag it waits on, set from the trial's thread; plain Python, here
    beside the one function that reads it.
  - ``train_propagated_env``: ``ENV_VARS_TO_PROPAGATE``, which the spares must reproduce to
    match a worker's runtime env byte for byte. Not exported.
  - ``execution_context``, ``renew_upload_pool``: a worker's training thread, result queue and
    checkpoint upload pool, which a kept worker group must settle and renew between runs. Not
    exported; the upload pool is a class-level default that the first run shuts down.
  - ``ray_train_error``: ``RayTrainError``, what ``Result.from_path`` raises for a snapshot cut
    short by a crash; not exported.
  - ``start_train_coordinator``: Ray Train's per-cluster autoscaling coordinator, created early
    so that the first trial does not wait for it. Lives under ``ray.data._internal``.
``warm`` (Ray Train V2 internals)
  - ``warm_worker_group_cls``: a ``WorkerGroup`` that keeps its workers, sync actor and placement
    group for the process's next run (``_start_impl``, ``WorkerGroupState``, ``ReplicaGroup``).
    Ray Train ends a worker group with every ``fit()``; there is no public way to keep one.
``raylet``
  - ``prestart``: the raylet's ``PrestartWorkers`` gRPC call, so a trial's worker starts in a
    process that is already up. Ray's Python API does not expose it.
  - ``worker_setup_hook_env_var``: the variable that carries a worker process setup hook; Ray
    reads an actor-level hook only through it.
``tune``
  - ``LedgerResume``: a resumed sweep's search algorithm, which hands out the ledger's unfinished
    trials under their old ids (``config_parser._create_trial_from_spec``, as Tune's own
    ``SearchGenerator`` does, which always draws a new id). ``Tuner.restore`` keeps ids but
    unpickles Tune's saved state (``tuner.pkl``, each trial's ``CLOUDPICKLE`` fields, searcher
    generators), and a run folder may come from anyone; Tune has no public way to add a trial
    under a given id. Ray documents the restore as trusted-input only (ray-project/ray#62807).
  - ``continue_ids``: a resumed random search's ``BasicVariantGenerator`` gets the first driver's
    trial id prefix (``_uuid_prefix``), random per instance, so its same-seed draws come under
    the same ids. No public setter; the ``_TEST_TUNE_TRIAL_UUID`` environment variable is for
    Tune's tests and would apply to every generator in the process.
  - ``fit``: ``Tuner.fit()`` without its ``ResultGrid`` (``tuner._local_tuner._fit_internal``):
    the grid unpickles every failed trial's ``error.pkl`` from the run folder (the pinned Ray
    reads it with ``cloudpickle.loads``; ray-project/ray#62807 hardened the JSON state, not this
    file), and distsearch uses no part of the grid. No public option skips it.
  - ``trial_actor``: a trial's actor handle (``trial.temporary_state.ray_actor``), which the
    driver waits on and kills. Tune's callbacks are given no handle.
  - ``trial_actor_env``: Tune's ``DEFAULT_ENV_VARS`` and ``ENV_VARS_TO_PROPAGATE`` for trial
    actors, for the same byte-for-byte runtime env as ``train_propagated_env``.
  - ``sequential_trial_ids``: counted trial ids for the simulator's sweeps, in place of
    ``Trial.generate_id``'s 32 random bits, which collide once in millions of simulated trials
    and break ASHA's bookkeeping for that sweep. Tune has no public way to choose a new trial's
    id (``SearchGenerator`` always calls ``generate_id``).
  - ``keep_credentials_out_of_runtime_envs``: drops ``CREDENTIAL_ENV_VARS`` (AWS keys) from Tune's
    ``ENV_VARS_TO_PROPAGATE``, which copies them into every trial actor's runtime env, and Ray's
    runtime-env agent logs runtime envs in full to a world-readable file (ray-project/ray#29985).
    Tune has no option to stop the copy.
  - ``HEAD_NODE_RESOURCE``: ``node:__internal_head__``, which pins trial actors to the head.
    The public ``node:<ip>`` resource is not unique where nodes share an address.
``core``
  - ``actor_id``: an actor handle's id (``_actor_id``); ``get_runtime_context().get_actor_id()``
    answers only inside the actor, and a trial may be killed before it ever reports
    (ray-project/ray#32638).
  - ``job_actors_alive``: the GCS view of this job's actors (``ray._private.state``); the public
    ``ray.util.state`` needs the dashboard, which distsearch does not require.
  - ``end_local_monitor``: the embedded Ray's autoscaler monitor killed before ``ray.shutdown``
    (``Node.kill_monitor`` on ``worker._global_node``). Ray's shutdown ends the GCS before the
    monitor, whose SIGTERM handler then tries to reach that GCS, so every shutdown of an
    embedded Ray waits a full second for it. ``ray.init`` has no option to start without the
    monitor (``ray start --no-monitor`` is the CLI's alone). No upstream issue found.

``__init__``
  - ``PINNED_RAY_VERSION``, ``OLDEST_RAY_VERSION``, ``VOUCHED``, ``NotVouched``, ``not_vouched``:
    the version guard that switches the touch points off on another Ray release.

Public routes used instead of private ones: an actor handle's hash identifies it in the
reaper's bookkeeping; the ASHA replay on resume feeds the scheduler through its public
``on_trial_result``; TensorBoard hparams come from a plain ``tune.Callback`` over tensorboardX.
"""

from __future__ import annotations

import ray

from ..errors import UserError

#: The only Ray these touch points were written and tested against.
PINNED_RAY_VERSION = "2.60.0"
#: The oldest Ray that distsearch runs on, with ``harness.trial_processes: ray`` (pyproject.toml's range).
OLDEST_RAY_VERSION = "2.59.0"
#: Whether the installed Ray is the pinned one, so that every touch point may run.
VOUCHED = ray.__version__ == PINNED_RAY_VERSION


class NotVouched(UserError, RuntimeError):
    """A feature that needs the pinned Ray's private API was asked of another Ray release."""


def not_vouched(what: str) -> NotVouched:
    """The error for ``what`` on an unpinned Ray, with the fix."""
    return NotVouched(
        f"{what} needs private parts of Ray {PINNED_RAY_VERSION} (see distsearch._ray), but Ray {ray.__version__} is installed; "
        f"fix: set harness.trial_processes: ray (Ray's public path), or pip install 'ray[default,tune,train]=={PINNED_RAY_VERSION}'"
    )
