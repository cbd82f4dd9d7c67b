"""Ray's private API, behind one door: every touch point distsearch makes, listed with its reason.

Nothing else in the package names a name under ``ray._private`` or an ``_internal`` module, an
underscore attribute of a Ray object, raw raylet RPC or an internal resource name;
``tests/unit/test_private_api.py`` fails if a module outside this package does. Each touch point
is tied to the Ray version pinned in ``pyproject.toml``: importing this package with any other
Ray raises ``ImportError`` at once, before a sweep can misbehave halfway through.

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
    route.
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
  - ``replace_restored_config``: after ``Tuner.restore``, this driver's callbacks, stopper and
    scheduler replace the pickled ones (``tuner._local_tuner``); restore takes none of them
    (ray-project/ray#41364, #30838).
  - ``trial_actor``: a trial's actor handle (``trial.temporary_state.ray_actor``), which the
    driver waits on and kills. Tune's callbacks are given no handle.
  - ``trial_actor_env``: Tune's ``DEFAULT_ENV_VARS`` and ``ENV_VARS_TO_PROPAGATE`` for trial
    actors, for the same byte-for-byte runtime env as ``train_propagated_env``.
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

Public routes used instead of private ones: an actor handle's hash identifies it in the
reaper's bookkeeping; the ASHA replay on resume feeds the scheduler through its public
``on_trial_result``; TensorBoard hparams come from a plain ``tune.Callback`` over tensorboardX.
"""

from __future__ import annotations

import ray

#: The only Ray these touch points were written and tested against (pyproject.toml pins it).
PINNED_RAY_VERSION = "2.60.0"

if ray.__version__ != PINNED_RAY_VERSION:
    raise ImportError(
        f"distsearch uses private parts of Ray {PINNED_RAY_VERSION} (see distsearch._ray), but Ray {ray.__version__} is "
        f"installed; fix: pip install 'ray[default,tune,train]=={PINNED_RAY_VERSION}'"
    )
