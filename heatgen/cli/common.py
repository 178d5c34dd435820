"""What the command families share: common options, the cloud to talk to, confirmations."""

from __future__ import annotations

import argparse
import sys

from heatgen.cloud.connect import Target, open_cloud
from heatgen.config import Site


def add_site(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site", metavar="SITE.yaml")
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


def open_target(site: Site, os_cloud: str | None) -> Target:
    """The cloud for this site (see :mod:`heatgen.cloud.connect`), the sandbox plugged in."""
    from heatgen.sandbox.hooks import Locator

    return open_cloud(os_cloud, site.cloud, sandbox=Locator())


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def interrupted(args: argparse.Namespace, site: Site) -> None:
    print(
        f"heatgen: interrupted; stack {site.site} was left as it is. Run `heatgen "
        f"{args.command} {args.site}` again to attach to it, or `heatgen status {args.site}`.",
        file=sys.stderr,
    )
