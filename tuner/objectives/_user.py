"""A user's own ``package.module:function`` objective, run through the same worker path."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import optuna

from tuner.errors import SpecError


def load_user_objective(
    reference: str, search_paths: tuple[Path, ...] = ()
) -> Callable[[optuna.Trial], float]:
    """Import ``package.module:function``; the current directory and ``search_paths`` come first.

    Raises:
        SpecError: the module cannot be imported, or the name is not a one-argument callable.
    """
    module_name, _, function_name = reference.partition(":")
    for folder in (Path.cwd(), *search_paths):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail in any way while importing
        raise SpecError(
            f"objective.model: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise SpecError(f"objective.model: {module_name!r} has no function {function_name!r}")
    try:
        inspect.signature(function).bind(object())
    except TypeError:
        raise SpecError(
            f"objective.model: {reference} must take one argument, the optuna.Trial"
        ) from None
    except ValueError:
        pass  # builtins without a signature: let the call decide
    return function
