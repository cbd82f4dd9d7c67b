"""The errors a user is meant to read: their own input was wrong, and the message says how to fix it.

``UserError`` and its kinds end the command line with exit 2 and one line naming the field, the
path or the address, and the fix. Any other exception is a bug in distsearch: the command line
exits 1, says so, and writes the traceback to a file it names.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave (a job, a path, a run folder, a cluster address)."""


class RunChoiceError(UserError, ValueError):
    """The run a command names cannot be started or resumed as asked (--run-id, --resume)."""


class RunFileMissing(UserError, FileNotFoundError):
    """A run folder lacks a file the command needs (no run there, or one that never finished)."""


class ClusterUnreachable(UserError, ConnectionError):
    """The Ray cluster at the address given cannot be reached."""


class ResourcesMissing(UserError, ValueError):
    """The job asks for resources (GPUs, CPUs) that the cluster or this machine does not have."""


class StorageFailed(Exception):
    """The run's storage failed mid-run (full, read-only, unreachable): not the user's input, not a
    bug. The run is left unfinished and the same command resumes it; the command line exits 3."""

    def __init__(self, storage: str, error: BaseException):
        self.storage, self.error = storage, error
        super().__init__(
            f"the storage {storage} failed: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}; "
            "the run is left unfinished; fix: free space or restore access to it, then run the same command: it resumes"
        )
