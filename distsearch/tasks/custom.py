"""``custom``: the user's own model and data, given as ``package.module:function``.

Options: ``factory`` (required), the import path; every other option is passed to that function
as a keyword argument. The function returns an object that satisfies ``distsearch.tasks.Task``
(``base.PROTOCOL_MEMBERS``); the heads in ``distsearch.tasks.base`` supply loss and metrics for
the usual targets. The module is imported with the current directory on ``sys.path`` (as
uvicorn and gunicorn do), and Ray adds the driver's directory to its workers' paths, so a module
beside the job works on the embedded Ray; on a cluster, ship it with ``--working-dir``.
See ``jobs/custom_task.py`` for a worked example.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Mapping

from .base import PROTOCOL_MEMBERS, TaskInputError


def resolve(path: Any):
    """The callable that ``module:function`` names; raises ``TaskInputError`` naming the problem."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise TaskInputError([f"task_options.factory: got {path!r}; use 'package.module:function'"])
    module_name, attr = path.split(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # only while importing: the caller's sys.path is left as it was found
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TaskInputError(
            [f"task_options.factory: got {path!r}; cannot import {module_name!r} ({e}); check the module path and that it is importable from {cwd}"]
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise TaskInputError([f"task_options.factory: got {path!r}; module {module_name!r} has no attribute {attr!r}"])
    if not callable(fn):
        raise TaskInputError([f"task_options.factory: got {path!r}; {attr!r} is not callable"])
    return fn


def make(options: Mapping[str, Any]):
    """Call the user's factory with the other options and check what it returns."""
    if "factory" not in options:
        raise TaskInputError(["task_options.factory: missing; give the 'package.module:function' that returns your task"])
    fn = resolve(options["factory"])
    kwargs = {k: v for k, v in options.items() if k != "factory"}
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as e:
        raise TaskInputError([f"task_options: {options['factory']} cannot take {sorted(kwargs)} ({e}); pass the options it declares"]) from None
    except ValueError:
        pass  # no signature to check (some builtins); the call below still tells
    try:
        task = fn(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's code: its error, where it came from, and the fix
        import traceback

        last = traceback.extract_tb(e.__traceback__)[-1]
        raise TaskInputError(
            [
                f"task_options.factory: {options['factory']} raised {type(e).__name__}: {e} (at {last.filename}:{last.lineno}, "
                f"in {last.name}); fix: make the factory work for these options: {sorted(kwargs) or 'none'}"
            ]
        ) from None
    missing = [m for m in PROTOCOL_MEMBERS if not hasattr(task, m)]
    if missing:
        raise TaskInputError(
            [
                f"task_options.factory: {options['factory']} returned {type(task).__name__}, which lacks {', '.join(missing)}; see distsearch.tasks.Task"
            ]
        )
    return task
