"""The ``heatgen`` command line: parse arguments, call one library function, print, exit.

Heavy modules (heatclient, keystoneauth1, the sandbox) are imported inside the command that
needs them, so ``heatgen render`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from heatgen import __version__
from heatgen.errors import ConfigError, ExitStatus, HeatgenError

# Which module registers each command: a command line that names one builds only that
# module's parsers (``heatgen render`` needs neither the sandbox's nor the stack commands').
COMMANDS = {
    "render": "render", "schema": "render",
    "deploy": "stack", "scale": "stack", "delete": "stack",
    "autoscale": "autoscale",
    "status": "inspect", "events": "inspect", "outputs": "inspect", "alarms": "inspect",
    "pool": "inspect",
    "sandbox": "sandbox",
}
MODULES = ("render", "stack", "autoscale", "inspect", "sandbox")  # in --help's order


def _command(words: Sequence[str]) -> str | None:
    """The command the words name, if they name one before any other argument."""
    for word in words:
        if word == "--debug":
            continue
        return word if word in COMMANDS else None
    return None


def _build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: every command's, or only the module of ``command``."""
    parser = argparse.ArgumentParser(
        prog="heatgen",
        description="Render, deploy and resize elastic HTCondor grids on OpenStack Heat.",
    )
    parser.add_argument("--version", action="version", version=f"heatgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="log API calls (secrets redacted)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    import importlib

    for module in (COMMANDS[command],) if command else MODULES:
        importlib.import_module(f"heatgen.cli.{module}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        args = _build_parser(_command(words)).parse_args(words)
        args.argv = words
        if args.debug:
            from heatgen.redact import enable_debug_logging

            enable_debug_logging()
        return int(args.func(args))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return int(error.exit_status)
    except HeatgenError as error:
        print(f"heatgen: error: {error}", file=sys.stderr)
        return int(error.exit_status)
    except KeyboardInterrupt:
        print("heatgen: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`heatgen status | head`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitStatus.OK)
