"""``heatgen status | events | outputs | alarms``: read a grid on a cloud."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from heatgen.cli import common
from heatgen.cli.common import add_pool_options, add_site, pool_factory
from heatgen.errors import CloudError, ServiceMissing

TELEMETRY_HINT = "sandbox: start it with `heatgen sandbox up --backend postgres --telemetry`"


def register(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="where the grid stands: status, master, workers, URLs, last events",
        description="The stack's status and reason, the master's addresses, the workers by "
        "state, the scaling URLs (redacted), the alarms' states and the last events.",
    )
    add_site(status)
    status.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default) or JSON with every member and output")
    status.add_argument("--members", action="store_true",
                        help="list every member of the worker group")
    status.add_argument("--show-secrets", action="store_true",
                        help="show the pre-signed scaling URLs in full")
    status.set_defaults(func=_status)

    events = sub.add_parser(
        "events", help="the stack's events, nested stacks included",
        description="Print the stack's newest events (nested stacks included), oldest first; "
        "--follow keeps printing new ones until Ctrl-C or the stack is deleted.",
    )
    add_site(events)
    events.add_argument("--limit", type=_event_count, default=20, metavar="N",
                        help="how many of the newest events to print (default 20; 0: every "
                        "event the stack has)")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.set_defaults(func=_events)

    outputs = sub.add_parser(
        "outputs", help="every output of the stack",
        description="Every stack output (worker ids and addresses included); pre-signed URLs "
        "are redacted unless --show-secrets.",
    )
    add_site(outputs)
    outputs.add_argument("--format", choices=("text", "json"), default="text",
                         help="text (default) or JSON")
    outputs.add_argument("--show-secrets", action="store_true",
                         help="show the pre-signed scaling URLs in full")
    outputs.set_defaults(func=_outputs)

    alarms = sub.add_parser(
        "alarms", help="the grid's CPU alarms: state, threshold (also as CPU %%), actions",
        description="List the stack's Aodh alarms with state, since when, threshold in Aodh's "
        "units and as the CPU percentage configured, query and actions (URLs redacted).",
    )
    add_site(alarms)
    alarms.add_argument("--history", action="store_true",
                        help="also every state transition with its reason")
    alarms.add_argument("--format", choices=["text", "json"], default="text",
                        help="text (default) or JSON")
    alarms.set_defaults(func=_alarms)

    pool = sub.add_parser(
        "pool", help="the HTCondor pool next to the worker group: who joined, slots, idleness",
        description="Each member of the worker group with its server id and what the pool "
        "says of its machine (slots and states, idle since, draining); members not in the "
        "pool; machines in the pool that are no member. Asks the pool as `scale` does.",
    )
    add_site(pool)
    add_pool_options(pool)
    pool.add_argument("--format", choices=["text", "json"], default="text",
                      help="text (default) or JSON")
    pool.set_defaults(func=_pool)


def _status(args: argparse.Namespace) -> int:
    from heatgen.cli.output import ConsoleReporter, master_line, member_counts
    from heatgen.config import load_site
    from heatgen.ops.inspect import status

    site = load_site(args.site)
    target = common.open_target(site, args.os_cloud)
    report = status(target.cloud, site, show_secrets=args.show_secrets)
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
        return 0
    stack = report.stack
    print(f"stack:    {stack.name} ({stack.id})")
    print(f"status:   {stack.status}" + (f": {stack.reason}" if stack.reason else ""))
    print(f"master:   {master_line(report.outputs, target.sandbox)}")
    print(f"workers:  {member_counts([m.status for m in report.members])}")
    if site.grouped:
        found = report.by_group()
        for group in site.groups:
            of = found.get(group.name, [])
            print(f"  group {group.name}: {member_counts([m.status for m in of])}")
    if args.members:
        for member in report.members:
            tag = f"[{member.group}] " if site.grouped else ""
            print(f"  {tag}{member.name:<16} {member.status:<18} server "
                  f"{member.server_id or '-'}")
    for group in site.groups:
        for key in ("scale_up_url", "scale_down_url"):
            name = group.names.output(key)
            if report.outputs.get(name):
                print(f"{name}: {report.outputs.get(name)}")
    if report.alarms:
        print("alarms:   " + ", ".join(f"{name} {state}" for name, state in report.alarms.items()))
    elif report.alarms_unavailable:
        hint = f"; {TELEMETRY_HINT}" if target.sandbox else ""
        print(f"alarms:   unavailable: {report.alarms_unavailable}{hint}")
    if report.events:
        print("last events:")
        out = ConsoleReporter(sys.stdout, progress=False)
        for event in report.events:
            out.event(event)
    if not args.members and report.members:
        print(f"(every member: `heatgen status {args.site} --members`; every output: "
              f"`heatgen outputs {args.site}`)")
    return 0


def _event_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})")
    return value


def _events(args: argparse.Namespace) -> int:
    from heatgen.cli.output import ConsoleReporter
    from heatgen.cloud.interface import Event
    from heatgen.config import load_site
    from heatgen.ops.inspect import not_deployed, require_stack
    from heatgen.ops.report import POLL_INTERVAL

    site = load_site(args.site)
    cloud = common.open_target(site, args.os_cloud).cloud
    # Without --follow one read by name does it: heat-api finds the stack itself.
    stack = require_stack(cloud, site, outputs=False).id if args.follow else site.site
    out = ConsoleReporter(sys.stdout, progress=False)
    note = ConsoleReporter(progress=False)
    seen: str | None = None

    def read() -> list[Event] | None:
        if seen is not None:
            return cloud.events(stack, after=seen)
        if not args.limit:
            return cloud.events(stack, after=None)
        newest = cloud.newest_events(stack, args.limit)
        return None if newest is None else list(reversed(newest))

    try:
        while True:
            try:
                events = read()
                # heat-api may list a deleted stack's events as none rather than answer 404.
                if args.follow and events == [] and cloud.get_stack(stack) is None:
                    events = None
            except CloudError as error:
                if not (args.follow and error.transient):
                    raise
                note.note(f"{error}; trying again")
                events = []
            if events is None:
                if not args.follow:
                    raise not_deployed(site)
                print(f"stack {site.site} is gone (deleted)")
                return 0
            for event in events:
                out.event(event)
                seen = event.id
            if not args.follow:
                return 0
            time.sleep(POLL_INTERVAL * 2)
    except KeyboardInterrupt:
        return 0


def _outputs(args: argparse.Namespace) -> int:
    from heatgen.cli.output import print_outputs
    from heatgen.config import load_site
    from heatgen.ops.inspect import require_stack, shown_outputs

    site = load_site(args.site)
    stack = require_stack(common.open_target(site, args.os_cloud).cloud, site)
    outputs = shown_outputs(stack, args.show_secrets)
    if args.format == "json":
        print(json.dumps(outputs, indent=2, sort_keys=True))
    else:
        print_outputs(outputs)
    return 0


def _alarms(args: argparse.Namespace) -> int:
    from heatgen.config import load_site
    from heatgen.ops import alarms

    site = load_site(args.site)
    target = common.open_target(site, args.os_cloud)
    try:
        found = alarms.site_alarms(target.cloud, site, history=args.history)
    except ServiceMissing as error:
        if not target.sandbox:
            raise
        raise ServiceMissing(error.service_type, f"Aodh; {TELEMETRY_HINT}") from None
    if args.format == "json":
        print(json.dumps([a.as_dict() for a in found], indent=2, sort_keys=True))
    else:
        print(alarms.format_text(found))
    return 0


def _pool(args: argparse.Namespace) -> int:
    from heatgen.config import load_site
    from heatgen.ops import poolview

    site = load_site(args.site)
    target = common.open_target(site, args.os_cloud)
    view = poolview.pool_view(target.cloud, site, pool_factory(args, target, site.keypair))
    if args.format == "json":
        print(json.dumps(view.as_dict(), indent=2, sort_keys=True))
    else:
        print(poolview.format_text(view))
    return 0
