"""What the command families share: common options, the cloud to talk to, confirmations."""

from __future__ import annotations

import argparse
import shlex
import sys

from heatgen.cloud.connect import Target, open_cloud
from heatgen.config import Site


def add_site(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site", metavar="SITE.yaml", help="the site config")
    parser.add_argument(
        "--os-cloud", metavar="NAME",
        help="cloud in clouds.yaml (default: the site's `cloud:`, then OS_CLOUD / OS_* "
        "variables, then the running heatgen sandbox)",
    )


def add_waiting(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument("--timeout", type=float, metavar="S", help=default_help)
    parser.add_argument("--no-wait", action="store_true", help="return once Heat accepted it")
    parser.add_argument(
        "--wait-for-idle", action="store_true",
        help="if the stack is busy with another operation, wait for it instead of failing",
    )
    parser.add_argument(
        "--stall-timeout", type=float, default=300.0, metavar="S",
        help="give up waiting (exit 5, the stack left alone) after S seconds without a new "
        "event, beyond what a running step (the master's wait condition) may take; 0: never "
        "(default 300)",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="print every event, also on a terminal")


def open_target(site: Site, os_cloud: str | None) -> Target:
    """The cloud for this site (see :mod:`heatgen.cloud.connect`), the sandbox plugged in.

    Commands call it as ``common.open_target``: the one place tests put their fake cloud."""
    from heatgen.sandbox.hooks import Locator

    return open_cloud(os_cloud, site.cloud, sandbox=Locator())


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def interrupted(args: argparse.Namespace, site: Site) -> None:
    """Ctrl-C during a wait: the stack goes on in Heat; the same command attaches again."""
    again = shlex.join(["heatgen", *getattr(args, "argv", [args.command, args.site])])
    print(
        f"heatgen: interrupted; stack {site.site} was left as it is. Run `{again}` again to "
        f"attach to it, or `heatgen status {shlex.quote(args.site)}` to look.",
        file=sys.stderr,
    )
