"""``heatgen status | events | outputs | alarms``: read a grid on a cloud."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from heatgen.cli.common import add_site, open_target
from heatgen.cli.output import ConsoleReporter, print_outputs
from heatgen.config import load_site


def register(sub: Any) -> None:
    status = sub.add_parser("status", help="where the grid stands")
    add_site(status)
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.add_argument("--show-secrets", action="store_true", help="show signed scaling URLs")
    status.set_defaults(func=_status)

    events = sub.add_parser("events", help="the stack's events, nested ones included")
    add_site(events)
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.set_defaults(func=_events)

    outputs = sub.add_parser("outputs", help="the stack's outputs")
    add_site(outputs)
    outputs.add_argument("--format", choices=("text", "json"), default="text")
    outputs.add_argument("--show-secrets", action="store_true", help="show signed scaling URLs")
    outputs.set_defaults(func=_outputs)

    parser = sub.add_parser(
        "alarms", help="the grid's CPU alarms: state, threshold (and as CPU %), actions",
        description="List the stack's Aodh alarms with state, since when, threshold in Aodh's "
        "units and as the CPU percentage configured, query and actions (URLs redacted).",
    )
    add_site(parser)
    parser.add_argument("--history", action="store_true",
                        help="also every state transition with its reason")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=_alarms)


def _status(args: argparse.Namespace) -> int:
    from heatgen.ops.inspect import status

    site = load_site(args.site)
    report = status(open_target(site, args.os_cloud).cloud, site, show_secrets=args.show_secrets)
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
        return 0
    stack = report.stack
    print(f"stack:    {stack.name} ({stack.id})")
    print(f"status:   {stack.status}" + (f": {stack.reason}" if stack.reason else ""))
    print(f"master:   floating {report.outputs.get('master_floating_ip')}, "
          f"private {report.outputs.get('master_private_ip')}")
    print(f"workers:  {len(report.members)}")
    for member in report.members:
        print(f"  {member.name:<16} {member.status:<18} server {member.server_id or '-'}")
    for key in ("scale_up_url", "scale_down_url"):
        print(f"{key}: {report.outputs.get(key)}")
    if report.alarms:
        print("alarms:   " + ", ".join(f"{name} {state}" for name, state in report.alarms.items()))
    if report.events:
        print("last events:")
        out = ConsoleReporter(sys.stdout)
        for event in report.events:
            out.event(event)
    return 0


def _events(args: argparse.Namespace) -> int:
    from heatgen.ops.inspect import require_stack
    from heatgen.ops.report import POLL_INTERVAL

    site = load_site(args.site)
    cloud = open_target(site, args.os_cloud).cloud
    stack = require_stack(cloud, site)
    out = ConsoleReporter(sys.stdout)
    seen = None
    try:
        while True:
            for event in cloud.events(stack.id, after=seen) or []:
                out.event(event)
                seen = event.id
            if not args.follow:
                return 0
            time.sleep(POLL_INTERVAL * 2)
    except KeyboardInterrupt:
        return 0


def _outputs(args: argparse.Namespace) -> int:
    from heatgen.ops.inspect import require_stack, shown_outputs

    site = load_site(args.site)
    stack = require_stack(open_target(site, args.os_cloud).cloud, site)
    outputs = shown_outputs(stack, args.show_secrets)
    if args.format == "json":
        print(json.dumps(outputs, indent=2, sort_keys=True))
    else:
        print_outputs(outputs)
    return 0


def _alarms(args: argparse.Namespace) -> int:
    from heatgen.ops import alarms

    site = load_site(args.site)
    target = open_target(site, args.os_cloud)
    found = alarms.site_alarms(target.cloud, site, history=args.history)
    if args.format == "json":
        print(json.dumps([a.as_dict() for a in found], indent=2, sort_keys=True))
    else:
        print(alarms.format_text(found))
    return 0
