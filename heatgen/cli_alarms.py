"""``heatgen alarms SITE.yaml``: the stack's Aodh alarms; heavy imports happen on use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "alarms", help="the grid's CPU alarms: state, threshold (and as CPU %), actions",
        description="List the stack's Aodh alarms with state, since when, threshold in Aodh's "
        "units and as the CPU percentage configured, query and actions (URLs redacted).",
    )
    parser.add_argument("site", type=Path, metavar="SITE.yaml")
    parser.add_argument("--os-cloud", default=None, help="cloud name in clouds.yaml")
    parser.add_argument("--history", action="store_true",
                        help="also every state transition with its reason")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=_alarms)


def _alarms(args: argparse.Namespace) -> int:
    from heatgen import alarms
    from heatgen.cli_stack import open_cloud
    from heatgen.config import load_site

    site = load_site(args.site)
    found = alarms.site_alarms(open_cloud(site, args.os_cloud), site, history=args.history)
    if args.format == "json":
        print(json.dumps([a.as_dict() for a in found], indent=2, sort_keys=True))
    else:
        print(alarms.format_text(found))
    return 0
