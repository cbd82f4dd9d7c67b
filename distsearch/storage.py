"""Where a run's files live: local paths and URIs alike, and writes that are atomic.

Every write goes to a temporary name beside the target, then is renamed (or moved, on object
stores, where the object appears whole or not at all), so a crash never leaves a half-written
file. URIs are whatever pyarrow's filesystems open (file://, s3://, gs://, hdfs://).
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any, Optional, Union

import pyarrow.fs as pafs

PathLike = Union[str, Path]


def is_uri(path: PathLike) -> bool:
    return "://" in str(path)


def join(base: PathLike, *parts: str) -> str:
    """``base`` joined with ``parts`` by '/', for local paths and URIs alike."""
    return "/".join([str(base).rstrip("/"), *parts])


def absolute(path: PathLike) -> str:
    """A local path made absolute (Tune needs that); URIs unchanged."""
    return str(path) if is_uri(path) else os.path.abspath(os.path.expanduser(str(path)))


# pyarrow filesystem type names whose URI scheme differs from the name.
_SCHEMES = {"gcs": "gs"}


def uri(fs: pafs.FileSystem, path: str) -> str:
    """``path`` inside ``fs`` as something ``filesystem`` opens again: a local path stays a path,
    anything else becomes ``<scheme>://path`` (Ray Train reports checkpoint paths without it)."""
    if isinstance(fs, pafs.LocalFileSystem) or fs.type_name == "local":
        return path
    return f"{_SCHEMES.get(fs.type_name, fs.type_name)}://{path}"


def filesystem(path: PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for ``path`` and the path inside it."""
    if is_uri(path):
        return pafs.FileSystem.from_uri(str(path))
    return pafs.LocalFileSystem(), absolute(path)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary sibling, then rename."""
    fs, p = filesystem(path)
    parent = p.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{p.rsplit('/', 1)[1]}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, p)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except Exception:  # noqa: BLE001 - already gone
            pass
        raise


#: errno values that say the storage itself failed, whatever file was being written.
FAILURE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM, errno.ENOTCONN, errno.ETIMEDOUT})
#: How pyarrow's S3 and GCS filesystems word a failed request.
_REMOTE_FAILURE = (
    "AWS Error",
    "When getting information",
    "When creating",
    "When uploading",
    "When writing",
    "When initiating",
    "GCS Error",
    "google::cloud",
)


def failure(error: BaseException) -> Optional[BaseException]:
    """The storage failure in ``error``'s chain (its causes and contexts), or None: an ``OSError``
    with one of ``FAILURE_ERRNOS``, or a remote filesystem's failed request. Ray and Tune wrap
    what a driver callback or a worker raised, so the chain is searched, not only the top."""
    seen: set[int] = set()
    todo: list[Optional[BaseException]] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and (e.errno in FAILURE_ERRNOS or any(m in str(e) for m in _REMOTE_FAILURE)):
            return e
        text = str(e)
        if any(f"[Errno {n}]" in text for n in FAILURE_ERRNOS) or any(m in text for m in _REMOTE_FAILURE):
            return e  # a worker's OSError, carried to the driver as text
        todo += [e.__cause__, e.__context__]
    return None


class TooLarge(ValueError):
    """A file is larger than what reading it may cost; the message names the file and the bound."""


def read_bytes(path: PathLike, max_bytes: Optional[int] = None) -> bytes:
    """The file's bytes; with ``max_bytes``, raises ``TooLarge`` before reading a larger file."""
    fs, p = filesystem(path)
    if max_bytes is not None:
        n = fs.get_file_info(p).size
        if n is not None and n > max_bytes:
            raise TooLarge(f"{path}: {n} bytes, more than the {max_bytes} this file may hold; it was not written by distsearch, or is damaged")
    with fs.open_input_stream(p) as f:
        return f.readall()


def exists(path: PathLike) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def write_json(path: PathLike, obj: Any) -> None:
    write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(path: PathLike, max_bytes: Optional[int] = None) -> Any:
    return json.loads(read_bytes(path, max_bytes))
