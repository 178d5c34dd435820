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


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heatgen",
        description="Render, deploy and resize elastic HTCondor grids on OpenStack Heat.",
    )
    parser.add_argument("--version", action="version", version=f"heatgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="log API calls (secrets redacted)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from heatgen.cli import autoscale, inspect, render, sandbox, stack

    render.register(sub)
    stack.register(sub)
    autoscale.register(sub)
    inspect.register(sub)
    sandbox.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        args = _build_parser().parse_args(words)
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
