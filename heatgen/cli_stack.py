"""``heatgen deploy | scale | status | events | outputs | delete``: the grid's life on a cloud.

Each command parses its arguments, builds one :class:`~heatgen.cloud.Cloud`, calls one
function of :mod:`heatgen.lifecycle`, prints the result and returns an exit code. The
OpenStack clients are imported only here, inside the commands, never by ``render``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from heatgen.cloud import Cloud, Event
from heatgen.config import Site, load_site
from heatgen.errors import CloudError, ExitStatus, UsageError

SANDBOX_DIR_VARIABLE = "HEATGEN_SANDBOX_DIR"


class ConsoleReporter:
    """Streams events and notes to stderr as they happen, one line each."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def event(self, event: Event) -> None:
        stamp = event.time.replace("T", " ").removesuffix("Z")
        where = f"{event.stack}/" if event.stack else ""
        reason = f"  {event.reason}" if event.reason else ""
        print(f"  {stamp}  {where}{event.resource:<24} {event.status}{reason}", file=self.stream,
              flush=True)

    def note(self, message: str) -> None:
        print(f"heatgen: {message}", file=self.stream, flush=True)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site", metavar="SITE.yaml")
    parser.add_argument(
        "--os-cloud", metavar="NAME",
        help="cloud in clouds.yaml (default: the site's `cloud:`, then OS_CLOUD / OS_* "
        "variables, then the running heatgen sandbox)",
    )


def _waiting(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument("--timeout", type=float, metavar="S", help=default_help)
    parser.add_argument("--no-wait", action="store_true", help="return once Heat accepted it")
    parser.add_argument(
        "--wait-for-idle", action="store_true",
        help="if the stack is busy with another operation, wait for it instead of failing",
    )


def register(sub: Any) -> None:
    deploy = sub.add_parser(
        "deploy", help="create the grid's stack, or converge it to the config",
        description="Render SITE.yaml, validate it on the server and create the stack; if it "
        "exists, show Heat's plan and update it. A re-deploy keeps the group's current size "
        "unless the config's worker count changed.",
    )
    _common(deploy)
    deploy.add_argument("--templates", metavar="DIR", help="override the built-in templates")
    deploy.add_argument("--dry-run", action="store_true", help="show Heat's plan, change nothing")
    deploy.add_argument("--check", action="store_true",
                        help="with --dry-run: exit 1 when the plan has changes")
    deploy.add_argument("--yes", action="store_true",
                        help="go ahead even if the plan replaces the master")
    deploy.add_argument(
        "--sandbox-no-master-signal", action="store_true",
        help="sandbox only: do not play the master's ready signal (the wait condition then "
        "times out, as it would for a master that never boots)",
    )
    _waiting(deploy, "seconds to wait (default: the site's wait_timeout + 600)")
    deploy.set_defaults(func=_deploy)

    scale = sub.add_parser(
        "scale", help="change the worker count (a PATCH update of only the capacity)",
        description="Set the group's desired size (and optionally its bounds) with a PATCH "
        "update (existing=True); no template is sent again.",
    )
    _common(scale)
    scale.add_argument("--workers", type=int, required=True, metavar="N")
    scale.add_argument("--min", type=int, metavar="A", help="new minimum size")
    scale.add_argument("--max", type=int, metavar="B", help="new maximum size")
    scale.add_argument("--dry-run", action="store_true",
                       help="show Heat's plan (or, when shrinking, which workers would go)")
    scale.add_argument("--drain", action="store_true",
                       help="when too few workers are idle, drain busy ones gracefully "
                       "(condor_drain -graceful) and remove them once idle")
    scale.add_argument("--drain-timeout", type=float, default=3600.0, metavar="S")
    scale.add_argument("--force", action="store_true",
                       help="remove busy workers if too few are idle: THEIR JOBS ARE LOST")
    scale.add_argument("--pool", choices=("ssh", "bindings"), default="ssh",
                       help="how to ask HTCondor which workers are idle: ssh to the master and "
                       "run condor_status -json (default), or the htcondor2 bindings against "
                       "the collector on the master's floating IP")
    scale.add_argument("--ssh-user", default="root", help="user on the master (default root)")
    scale.add_argument("--ssh-key", metavar="FILE", help="ssh identity file")
    scale.add_argument("--pool-token", metavar="FILE",
                       help="IDTOKEN file for --pool bindings")
    _waiting(scale, "seconds to wait (default 1800)")
    scale.set_defaults(func=_scale)

    status = sub.add_parser("status", help="where the grid stands")
    _common(status)
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.add_argument("--show-secrets", action="store_true", help="show signed scaling URLs")
    status.set_defaults(func=_status)

    events = sub.add_parser("events", help="the stack's events, nested ones included")
    _common(events)
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.set_defaults(func=_events)

    outputs = sub.add_parser("outputs", help="the stack's outputs")
    _common(outputs)
    outputs.add_argument("--format", choices=("text", "json"), default="text")
    outputs.add_argument("--show-secrets", action="store_true", help="show signed scaling URLs")
    outputs.set_defaults(func=_outputs)

    delete = sub.add_parser("delete", help="delete the grid's stack")
    _common(delete)
    delete.add_argument("--yes", action="store_true", help="do not ask")
    delete.add_argument("--timeout", type=float, default=1800.0, metavar="S")
    delete.add_argument("--no-wait", action="store_true", help="return once Heat accepted it")
    delete.set_defaults(func=_delete)


# --------------------------------------------------------------------------- plumbing


def _sandbox_auth() -> dict[str, Any] | None:
    """The running sandbox's clouds.yaml entry, if a sandbox was ever brought up here."""
    from heatgen.sandbox.control import clouds_entry
    from heatgen.sandbox.settings import load_secrets, resolve_config

    config = resolve_config(os.environ.get(SANDBOX_DIR_VARIABLE) or None)
    if load_secrets(config) is None:
        return None
    return clouds_entry(config)


def open_cloud(site: Site, os_cloud: str | None) -> Cloud:
    from heatgen import osclient

    name = os_cloud or site.cloud
    sandbox = None
    if name is None and not os.environ.get("OS_CLOUD") and not os.environ.get("OS_AUTH_URL"):
        sandbox = _sandbox_auth()
        if sandbox is None:
            raise CloudError(
                "no cloud is configured: pass --os-cloud NAME, set `cloud:` in the site config "
                "or OS_CLOUD / OS_* variables, or start the local one with `heatgen sandbox up`"
            )
    connection = osclient.connect(name, sandbox_auth=sandbox)
    return osclient.OpenStackCloud(connection)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _print_plan(lines: list[str]) -> None:
    for line in lines:
        print(line)


def _print_outputs(outputs: dict[str, Any]) -> None:
    for key, value in outputs.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"{key}: {shown}")


# --------------------------------------------------------------------------- commands


def _deploy(args: argparse.Namespace) -> int:
    from heatgen.lifecycle import DeployOptions, deploy
    from heatgen.render import render_site

    site = load_site(args.site)
    grid = render_site(site, templates_dir=args.templates)
    if args.check and not args.dry_run:
        raise UsageError("--check goes with --dry-run")
    cloud = open_cloud(site, args.os_cloud)
    options = DeployOptions(
        dry_run=args.dry_run, wait=not args.no_wait, timeout=args.timeout, yes=args.yes,
        wait_for_idle=args.wait_for_idle, play_master=not args.sandbox_no_master_signal,
    )
    try:
        result = deploy(cloud, grid, options, ConsoleReporter(), confirm=_confirm)
    except KeyboardInterrupt:
        _interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    if result.plan is not None and (result.action == "planned" or result.plan.has_changes):
        print(f"plan for stack {site.site}:")
        _print_plan(result.plan.lines())
    stack = result.stack
    if result.action == "planned":
        return int(ExitStatus.PLAN_HAS_CHANGES) if args.check and result.plan and \
            result.plan.has_changes else 0
    if result.action == "unchanged":
        print(f"stack {site.site} is up to date ({stack.status if stack else ''})")
        return 0
    if stack is not None:
        print(f"stack {site.site} {stack.status} in {result.elapsed:.1f} s")
        if result.action in ("created", "updated"):
            from heatgen.lifecycle import shown_outputs

            _print_outputs(shown_outputs(stack, show_secrets=False))
    return 0


def _interrupted(args: argparse.Namespace, site: Site) -> None:
    print(
        f"heatgen: interrupted; stack {site.site} was left as it is. Run `heatgen "
        f"{args.command} {args.site}` again to attach to it, or `heatgen status {args.site}`.",
        file=sys.stderr,
    )


POOL_RECORDING_VARIABLE = "HEATGEN_POOL_RECORDING"


def _pool_factory(args: argparse.Namespace) -> Any:
    """How `scale` reaches the pool: the master over ssh, the bindings, or a recording.

    ``HEATGEN_POOL_RECORDING`` (files of ``condor_status -json`` output, separated by ``:``)
    replays recorded pool states, for tests and dry runs without a pool.
    """
    from heatgen import pool

    def pool_for(stack: Any) -> Any:
        recording = os.environ.get(POOL_RECORDING_VARIABLE)
        if recording:
            return pool.RecordedPool.from_files(recording.split(os.pathsep))
        host = stack.outputs.get("master_floating_ip")
        if not host:
            return None
        if args.pool == "bindings":
            return pool.BindingsPool(str(host), token_file=args.pool_token)
        return pool.SshPool(str(host), user=args.ssh_user, identity_file=args.ssh_key)

    return pool_for


def _scale(args: argparse.Namespace) -> int:
    from heatgen.lifecycle import ScaleRequest, scale, scale_parameters

    site = load_site(args.site)
    if args.force and args.drain:
        raise UsageError("--force and --drain exclude each other")
    request = ScaleRequest(
        workers=args.workers, min=args.min, max=args.max, dry_run=args.dry_run,
        wait=not args.no_wait, timeout=args.timeout or 1800.0, wait_for_idle=args.wait_for_idle,
        force=args.force, drain=args.drain, drain_timeout=args.drain_timeout,
    )
    scale_parameters(site, request)  # bounds are checked before any API call
    cloud = open_cloud(site, args.os_cloud)
    try:
        result = scale(cloud, site, request, ConsoleReporter(), pool_for=_pool_factory(args))
    except KeyboardInterrupt:
        _interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    shown = ", ".join(f"{k}={v}" for k, v in result.parameters.items())
    if result.plan is not None:
        print(f"plan for stack {site.site} ({shown}):")
        _print_plan(result.plan.lines())
        return 0
    plan = result.scale_in
    if plan is not None:
        for line in plan.lines():
            print(line)
    stack = result.stack
    if result.action == "planned":
        print(f"dry run: the group would go from {len(plan.members) if plan else '?'} to "
              f"{result.parameters.get('worker_desired')} workers; nothing was changed")
    elif result.action == "unchanged":
        print(f"stack {site.site}: no worker removed")
    else:
        workers = stack.outputs.get("worker_count") if stack else None
        print(f"stack {site.site} {stack.status if stack else ''} in {result.elapsed:.1f} s; "
              f"workers: {workers if workers is not None else result.parameters['worker_desired']}")
    if result.busy_kept:
        count = result.busy_kept
        which = "it is" if count == 1 else "they are"
        print(f"heatgen: {count} more worker{'s' if count > 1 else ''} would have had to go, "
              f"but {which} busy: asked for {args.workers} workers, the group keeps "
              f"{result.parameters['worker_desired']}. Use --drain to drain busy workers first, "
              "or --force to remove them with their jobs", file=sys.stderr)
        return int(ExitStatus.BUSY_WORKERS_KEPT)
    return 0


def _status(args: argparse.Namespace) -> int:
    from heatgen.lifecycle import status

    site = load_site(args.site)
    report = status(open_cloud(site, args.os_cloud), site, show_secrets=args.show_secrets)
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
    from heatgen.lifecycle import POLL_INTERVAL, require_stack

    site = load_site(args.site)
    cloud = open_cloud(site, args.os_cloud)
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
    from heatgen.lifecycle import require_stack, shown_outputs

    site = load_site(args.site)
    stack = require_stack(open_cloud(site, args.os_cloud), site)
    outputs = shown_outputs(stack, args.show_secrets)
    if args.format == "json":
        print(json.dumps(outputs, indent=2, sort_keys=True))
    else:
        _print_outputs(outputs)
    return 0


def _delete(args: argparse.Namespace) -> int:
    from heatgen.lifecycle import delete

    site = load_site(args.site)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"deleting stack {site.site} needs --yes when not on a terminal")
        if not _confirm(f"delete stack {site.site} and every VM in it?"):
            print("nothing was deleted")
            return int(ExitStatus.USAGE)
    cloud = open_cloud(site, args.os_cloud)
    try:
        final = delete(cloud, site, timeout=args.timeout, report=ConsoleReporter(),
                       wait=not args.no_wait)
    except KeyboardInterrupt:
        _interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    print(f"stack {site.site} {final.status if final else 'DELETE_COMPLETE'}")
    return 0

