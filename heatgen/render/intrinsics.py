"""The one walker over Heat's intrinsic functions in a parsed HOT snippet.

An intrinsic function is a mapping with exactly one key, the function's name
(``{get_attr: [master_port, fixed_ips]}``). The render checks, and the plan's comparison of
definitions, read templates through :func:`calls` and :func:`targets` only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

REFERENCES = ("get_resource", "get_attr")


def calls(node: Any) -> Iterator[tuple[str, Any]]:
    """Every ``(function, argument)`` of a one-key mapping in ``node``, outermost first.

    The argument is walked too, so nested calls (``str_replace`` around ``get_file``) appear.
    """
    if isinstance(node, Mapping):
        if len(node) == 1:
            ((key, value),) = node.items()
            if isinstance(key, str):
                yield key, value
        for value in node.values():
            yield from calls(value)
    elif isinstance(node, list):
        for item in node:
            yield from calls(item)


def head(argument: Any) -> Any:
    """The first element of a list argument (``get_attr: [name, ...]``), else the argument."""
    return argument[0] if isinstance(argument, list) and argument else argument


def targets(node: Any, functions: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """``(function, name)`` for each call of one of ``functions`` naming a string target:
    the resource of ``get_resource``/``get_attr``, the parameter of ``get_param``, the file of
    ``get_file``."""
    for function, argument in calls(node):
        if function in functions:
            target = head(argument) if function != "get_file" else argument
            if isinstance(target, str):
                yield function, target
