"""``heatgen sandbox`` subcommands (the sandbox lands in a following change)."""

from __future__ import annotations

import argparse
from typing import Any

from heatgen.errors import UsageError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("sandbox", help="local Keystone + Heat")
    parser.set_defaults(func=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    raise UsageError("the sandbox is not part of this build yet")
