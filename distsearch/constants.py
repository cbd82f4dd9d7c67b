"""Every string that two modules share: metric keys, Parquet columns, file names, statuses.

A name is written once here and imported everywhere else, so a column cannot be spelled two
ways. The Parquet schema in docs/results.md is checked against these names.
"""

#: distsearch's own version, recorded in run.json (pyproject.toml carries the same).
VERSION = "0.1.0"

# ---- files inside <storage>/<job name>/<run id>/ -------------------------------------------
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
RUN_FILE = "run.json"
BEST_FILE = "best.json"
ENSEMBLE_FILE = "ensemble.json"  # the ensemble's members and weights, its validation and test scores beside the single best's
MODEL_DIR = "model"  # the selected models, ready for distsearch.load_model: a JSON description and safetensors weights each
BEST_MODEL = "best"  # model/best.json, model/best.safetensors
ENSEMBLE_MODEL = "ensemble"
MODEL_DESCRIPTION_SUFFIX = ".json"
MODEL_WEIGHTS_SUFFIX = ".safetensors"
LEGACY_MODEL_SUFFIX = ".pt"  # runs written before the safetensors format: a pickle, never loaded
TUNE_DIR = "tune"  # Tune's experiment dir: per-trial TensorBoard events, experiment state
TRAIN_DIR = "train"  # one Ray Train run per trial: its checkpoints
DRIVERS_DIR = "drivers"  # <generation>/<claim id>.json: who started the run and each driver that took it over (distsearch.lease)
LEDGER_DIR = "ledger"  # <trial id>.json per trial: started_at, ended_at, error, last_report; read by a resumed driver
CHECKPOINT_FILE = "model.pt"  # inside each checkpoint directory
CHECKPOINT_META_FILE = "meta.json"  # epoch and metrics of that checkpoint
CHECKPOINT_HISTORY_FILE = "history.json"  # every report of the trial up to that checkpoint (timestamp: UTC seconds)
CHECKPOINT_RECORD_FILE = "checkpoints.json"  # <trial id>/ of a trial that keeps its own checkpoints (train.store): the kept ones, the latest last

# Written into every Parquet file's key-value metadata; bump on any column change.
SCHEMA_VERSION = "1"
SCHEMA_VERSION_KEY = b"distsearch.schema_version"

# ---- keys the per-worker loop reports each epoch --------------------------------------------
EPOCH = "epoch"  # 1-based count of finished epochs; ASHA's time attribute
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
EPOCH_SECONDS = "epoch_seconds"  # wall seconds of this epoch's train + validation on rank 0
BUSY_SECONDS = "busy_seconds"  # cumulative seconds rank 0 spent inside train + validation
# Added by the driver's report wrapper on rank 0, never by the loop:
PLACEMENT_GROUP_ID = "placement_group_id"  # hex id of the trial's Train worker-group PG
NODE_IDS = "node_ids"  # hex Ray node id of every rank, in rank order, comma-separated
WORLD_SIZE = "world_size"
# UTC seconds rank 0's worker process started: before the trial's started_at when it took a spare
# process (harness.spare_worker_keep_alive_s) or ran in a group kept from an earlier trial
# (harness.reuse_worker_groups), after it when Ray started a new one for the trial.
WORKER_PROCESS_STARTED_AT = "worker_process_started_at"
# Added by the controller-side ForwardReports when a report carries a checkpoint:
CHECKPOINT_PATH = "checkpoint_path"
# Reported with each checkpoint, and the score Ray Train keeps checkpoints by (train.checkpoint.keep_rank).
CHECKPOINT_KEEP_RANK = "checkpoint_keep_rank"

# ---- cost metrics: measured by each trial (train.costs) when objectives or constraints name them ----
NUM_PARAMS = "num_params"  # the model's parameters (count)
MODEL_BYTES = "model_bytes"  # its parameters' and buffers' bytes
LATENCY_MS = "latency_ms"  # median forward pass of costs.latency_batch_size rows on the trial's device (milliseconds)
PEAK_MEMORY_BYTES = "peak_memory_bytes"  # CUDA's allocator peak over those passes (bytes); a CPU reports none
COST_METRICS = (NUM_PARAMS, MODEL_BYTES, LATENCY_MS, PEAK_MEMORY_BYTES)  # each lower-is-better

# ---- trials.parquet -------------------------------------------------------------------------
TRIAL_ID = "trial_id"
STATUS = "status"
EPOCHS_COMPLETED = "epochs_completed"
BEST_METRIC = "best_metric"
LAST_METRIC = "last_metric"
BEST_EPOCH = "best_epoch"
STARTED_AT = "started_at"  # UTC time Tune started the trial's actor
ENDED_AT = "ended_at"  # UTC time the trial completed, was stopped, or failed
WALL_SECONDS = "wall_seconds"  # trial start (Tune) to trial end, seconds
RELEASE_SECONDS = "release_seconds"  # trial end to its worker-group PG confirmed removed, or to its actor's next trial taking it
ERROR = "error"
LAST_REPORT = "last_report"  # ledger only: the trial's last {epoch, metric}, reported again if a resumed driver restarts it
PARAMS = "params"  # ledger: the trial's hyperparameters (flat names)
PARETO_RANK = "pareto_rank"  # objectives only: the trial's front at its best epoch among trials meeting the constraints; 0: the Pareto front
DOMINATED = "dominated"  # objectives only: not on the Pareto front (a trial without a rank counts as dominated)
HP_PREFIX = "hp_"  # one typed column per hyperparameter: hp_<name>, dots become "__"

# ---- epochs.parquet -------------------------------------------------------------------------
TIMESTAMP = "timestamp"  # UTC time the driver received the report

# ---- trial statuses -------------------------------------------------------------------------
STATUS_COMPLETED = "completed"
STATUS_STOPPED = "stopped_early"
STATUS_ERROR = "error"
STATUS_CANCELLED = "cancelled"  # running when the sweep was ended by its error budget, budget.time_s or budget.worker_epochs
STATUS_NOT_STARTED = "not_started"  # drawn by the searcher, but the sweep ended before it started
STATUSES = (STATUS_COMPLETED, STATUS_STOPPED, STATUS_ERROR, STATUS_CANCELLED, STATUS_NOT_STARTED)

# ---- environment ----------------------------------------------------------------------------
ADDRESS_ENV = "RAY_ADDRESS"  # a cluster to join; unset means an embedded local Ray
