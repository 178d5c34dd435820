"""``heatgen deploy | scale | delete``: change a grid on a cloud.

Each command parses its arguments, opens one :class:`~heatgen.cloud.connect.Target`, calls one
function of :mod:`heatgen.ops`, prints the result and returns an exit code. The OpenStack
clients are imported inside the commands, never by ``render``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from heatgen.cli.common import add_site, add_waiting, confirm, interrupted, open_target
from heatgen.cli.output import ConsoleReporter, print_outputs, print_plan
from heatgen.config import load_site
from heatgen.errors import ExitStatus, UsageError


def register(sub: Any) -> None:
    deploy = sub.add_parser(
        "deploy", help="create the grid's stack, or converge it to the config",
        description="Render SITE.yaml, validate it on the server and create the stack; if it "
        "exists, show Heat's plan and update it. A re-deploy keeps the group's current size "
        "unless the config's worker count changed.",
    )
    add_site(deploy)
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
    add_waiting(deploy, "seconds to wait (default: the site's wait_timeout + 600)")
    deploy.set_defaults(func=_deploy)

    scale = sub.add_parser(
        "scale", help="change the worker count (a PATCH update of only the capacity)",
        description="Set the group's desired size (and optionally its bounds) with a PATCH "
        "update (existing=True); no template is sent again.",
    )
    add_site(scale)
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
    add_waiting(scale, "seconds to wait (default 1800)")
    scale.set_defaults(func=_scale)

    delete = sub.add_parser("delete", help="delete the grid's stack")
    add_site(delete)
    delete.add_argument("--yes", action="store_true", help="do not ask")
    delete.add_argument("--timeout", type=float, default=1800.0, metavar="S")
    delete.add_argument("--no-wait", action="store_true", help="return once Heat accepted it")
    delete.set_defaults(func=_delete)


def _deploy(args: argparse.Namespace) -> int:
    from heatgen.ops.deploy import DeployOptions, deploy
    from heatgen.render import render_site

    site = load_site(args.site)
    grid = render_site(site, templates_dir=args.templates)
    if args.check and not args.dry_run:
        raise UsageError("--check goes with --dry-run")
    target = open_target(site, args.os_cloud)
    report = ConsoleReporter()
    extra: dict[str, str] = {}
    watcher = None
    if target.sandbox:
        from heatgen.sandbox import hooks

        extra = hooks.environments(target.cloud)
        if not args.sandbox_no_master_signal:
            watcher = hooks.master(target.cloud, report)
    options = DeployOptions(
        dry_run=args.dry_run, wait=not args.no_wait, timeout=args.timeout, yes=args.yes,
        wait_for_idle=args.wait_for_idle, extra_environments=extra,
    )
    try:
        result = deploy(target.cloud, grid, options, report, confirm=confirm, watcher=watcher)
    except KeyboardInterrupt:
        interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    if result.plan is not None and (result.action == "planned" or result.plan.has_changes):
        print(f"plan for stack {site.site}:")
        print_plan(result.plan.lines())
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
            from heatgen.ops.inspect import shown_outputs

            print_outputs(shown_outputs(stack, show_secrets=False))
    return 0


POOL_RECORDING_VARIABLE = "HEATGEN_POOL_RECORDING"


def _pool_factory(args: argparse.Namespace) -> Any:
    """How `scale` reaches the pool: the master over ssh, the bindings, or a recording.

    ``HEATGEN_POOL_RECORDING`` (files of ``condor_status -json`` output, separated by ``:``)
    replays recorded pool states, for tests and dry runs without a pool.
    """
    from heatgen.contract import GridOutputs
    from heatgen.pool.bindings import BindingsPool
    from heatgen.pool.ssh import SshPool

    def pool_for(stack: Any) -> Any:
        recording = os.environ.get(POOL_RECORDING_VARIABLE)
        if recording:
            from heatgen.sandbox.recording import RecordedPool

            return RecordedPool.from_files(recording.split(os.pathsep))
        host = GridOutputs.of(stack.outputs).master_floating_ip
        if not host:
            return None
        if args.pool == "bindings":
            return BindingsPool(host, token_file=args.pool_token)
        return SshPool(host, user=args.ssh_user, identity_file=args.ssh_key)

    return pool_for


def _scale(args: argparse.Namespace) -> int:
    from heatgen.ops.scale import ScaleRequest, scale, scale_parameters

    site = load_site(args.site)
    if args.force and args.drain:
        raise UsageError("--force and --drain exclude each other")
    request = ScaleRequest(
        workers=args.workers, min=args.min, max=args.max, dry_run=args.dry_run,
        wait=not args.no_wait, timeout=args.timeout or 1800.0, wait_for_idle=args.wait_for_idle,
        force=args.force, drain=args.drain, drain_timeout=args.drain_timeout,
    )
    scale_parameters(site, request)  # bounds are checked before any API call
    target = open_target(site, args.os_cloud)
    try:
        result = scale(target.cloud, site, request, ConsoleReporter(),
                       pool_for=_pool_factory(args))
    except KeyboardInterrupt:
        interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    shown = ", ".join(f"{k}={v}" for k, v in result.parameters.items())
    if result.plan is not None:
        print(f"plan for stack {site.site} ({shown}):")
        print_plan(result.plan.lines())
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


def _delete(args: argparse.Namespace) -> int:
    from heatgen.ops.delete import delete

    site = load_site(args.site)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"deleting stack {site.site} needs --yes when not on a terminal")
        if not confirm(f"delete stack {site.site} and every VM in it?"):
            print("nothing was deleted")
            return int(ExitStatus.USAGE)
    target = open_target(site, args.os_cloud)
    try:
        final = delete(target.cloud, site, timeout=args.timeout, report=ConsoleReporter(),
                       wait=not args.no_wait)
    except KeyboardInterrupt:
        interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    print(f"stack {site.site} {final.status if final else 'DELETE_COMPLETE'}")
    return 0

