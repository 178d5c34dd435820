"""``heatgen deploy | scale | delete``: change a grid on a cloud.

Each command parses its arguments, opens one :class:`~heatgen.cloud.connect.Target`, calls one
function of :mod:`heatgen.ops`, prints the result and returns an exit code. The OpenStack
clients are imported inside the commands, never by ``render``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from heatgen.cli import common
from heatgen.cli.common import (
    add_pool_options,
    add_site,
    add_waiting,
    confirm,
    interrupted,
    pool_factory,
)
from heatgen.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from heatgen.cli.output import ConsoleReporter
    from heatgen.cloud.connect import Target
    from heatgen.config.model import Site


def register(sub: Any) -> None:
    deploy = sub.add_parser(
        "deploy", help="create the grid's stack, or converge it to the config",
        description="Render SITE.yaml, validate it on the server and create the stack; if it "
        "exists, show Heat's plan and update it. A deploy never removes workers: a re-deploy "
        "keeps the group's current size, applies a raised workers.desired and keeps a "
        "lowered one (or a lowered workers.max) at the group's size; shrink with "
        "`heatgen scale`.",
    )
    add_site(deploy)
    deploy.add_argument("--templates", metavar="DIR",
                        help="directory whose *.j2 files override the built-in templates")
    deploy.add_argument("--dry-run", action="store_true",
                        help="show Heat's plan, the parameters that change and the group's "
                        "size after the update; change nothing")
    deploy.add_argument("--check", action="store_true",
                        help="with --dry-run: exit 1 when the plan has changes")
    deploy.add_argument("--yes", action="store_true",
                        help="go ahead even if the plan replaces the master, its port, its "
                        "floating IP or the pool secret")
    deploy.add_argument("--resume", action="store_true",
                        help="the stack is stalled in progress (its Heat engine stopped): send "
                        "an update with the same definition so that a running engine takes "
                        "it over, and wait")
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
        "update (existing=True); no template is sent again. Shrinking removes only idle "
        "workers, asked of the HTCondor pool. 0 parks the grid (needs a minimum of 0).",
    )
    add_site(scale)
    scale.add_argument("--group", metavar="NAME",
                       help="the worker group to resize (needed when the site lists several "
                            "under worker_groups); the other groups are left alone")
    scale.add_argument("--workers", type=int, required=True, metavar="N",
                       help="the group's new size (0 parks the grid)")
    scale.add_argument("--min", type=int, metavar="A",
                       help="new minimum size (default: the deployed one)")
    scale.add_argument("--max", type=int, metavar="B",
                       help="new maximum size (default: the deployed one)")
    scale.add_argument("--dry-run", action="store_true",
                       help="show Heat's plan (or, when shrinking, which workers would go)")
    scale.add_argument("--drain", action="store_true",
                       help="when too few workers are idle, drain busy ones gracefully "
                       "(condor_drain -graceful) and remove them once idle")
    scale.add_argument("--drain-timeout", type=common.seconds, metavar="S",
                       help="seconds --drain waits for drained workers to become idle, at "
                       "most the site's condor.retirement_time (the default), after which "
                       "HTCondor would evict their jobs; on timeout heatgen cancels the "
                       "drains and the jobs keep running")
    scale.add_argument("--force", action="store_true",
                       help="remove busy workers if too few are idle: THEIR JOBS ARE LOST")
    scale.add_argument("--resume", action="store_true",
                       help="the stack is stalled in progress (its Heat engine stopped): send "
                       "this resize again so that a running engine takes it over")
    add_pool_options(scale)
    add_waiting(scale, "seconds to wait (default 1800)")
    scale.set_defaults(func=_scale)

    delete = sub.add_parser(
        "delete", help="delete the grid's stack and every server in it",
        description="Delete the stack (asks on a terminal; needs --yes otherwise). A delete "
        "already under way is waited on, never sent again.",
    )
    add_site(delete)
    delete.add_argument("--yes", action="store_true", help="do not ask")
    delete.add_argument("--timeout", type=common.positive_seconds, default=1800.0, metavar="S",
                        help="seconds to wait (default 1800)")
    delete.add_argument("--no-wait", action="store_true", help="return once Heat accepted it")
    delete.add_argument("--verbose", action="store_true",
                        help="print every event, also on a terminal")
    delete.set_defaults(func=_delete)


def _reporter(args: argparse.Namespace) -> ConsoleReporter:
    from heatgen.cli.output import ConsoleReporter

    return ConsoleReporter(progress=False) if args.verbose else ConsoleReporter()


def _statuses(target: Target, site: Site, stack: Any) -> list[str]:
    """Each member's status, for the summary. After a completed create every member is
    CREATE_COMPLETE and each group's size is among the outputs the wait has read, so the
    members are not listed (a listing brings about 1 KiB per member)."""
    from heatgen.cloud.group import group_members
    from heatgen.contract import GridOutputs

    if stack.status == "CREATE_COMPLETE":
        sizes = [GridOutputs.of(stack.outputs, group.names).worker_count
                 for group in site.groups]
        if all(size is not None for size in sizes):
            return ["CREATE_COMPLETE"] * sum(size or 0 for size in sizes)
    return [member.status for member in group_members(target.cloud, stack)]


def _deploy(args: argparse.Namespace) -> int:
    from heatgen.cli.output import print_plan, print_summary
    from heatgen.config import load_site
    from heatgen.ops.deploy import DeployOptions, deploy
    from heatgen.render import render_site

    site = load_site(args.site)
    grid = render_site(site, templates_dir=args.templates)
    if args.check and not args.dry_run:
        raise UsageError("--check goes with --dry-run")
    target = common.open_target(site, args.os_cloud)
    report = _reporter(args)
    extra: dict[str, str] = {}
    files: dict[str, str] = {}
    watcher = None
    if target.sandbox:
        from heatgen.sandbox import hooks

        hooks.check_site_boots(site)
        stand_ins = hooks.stand_ins(target.cloud)
        extra, files = dict(stand_ins.environments), dict(stand_ins.files)
        if not args.sandbox_no_master_signal and not stand_ins.pool:
            watcher = hooks.master(target.cloud, report)
    options = DeployOptions(
        dry_run=args.dry_run, wait=not args.no_wait, timeout=args.timeout, yes=args.yes,
        wait_for_idle=args.wait_for_idle, extra_environments=extra, extra_files=files,
        stall_timeout=args.stall_timeout, resume=args.resume, site_label=args.site,
    )
    try:
        result = deploy(target.cloud, grid, options, report, confirm=confirm, watcher=watcher)
    except KeyboardInterrupt:
        report.close()
        interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    finally:
        report.close()
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
    if result.action == "started":
        print(f"stack {site.site}: Heat accepted the change ({stack.status if stack else ''}); "
              f"follow it with `heatgen events {args.site} --follow` or "
              f"`heatgen status {args.site}`")
        return 0
    if stack is not None:
        from heatgen.ops.inspect import shown_outputs

        print(f"stack {site.site} {stack.status} in {result.elapsed:.1f} s")
        print_summary(shown_outputs(stack, show_secrets=False),
                      _statuses(target, site, stack), target.sandbox, args.site)
    return 0


def _scale(args: argparse.Namespace) -> int:
    from heatgen.cli.output import print_plan
    from heatgen.config import load_site
    from heatgen.ops.scale import ScaleRequest, check_request, requested_group, scale

    site = load_site(args.site)
    request = ScaleRequest(
        workers=args.workers, min=args.min, max=args.max, dry_run=args.dry_run,
        wait=not args.no_wait, timeout=args.timeout or 1800.0, wait_for_idle=args.wait_for_idle,
        force=args.force, drain=args.drain, drain_timeout=args.drain_timeout,
        resume=args.resume, stall_timeout=args.stall_timeout, site_label=args.site,
        group=args.group,
    )
    check_request(request, site)  # before any API call
    requested_group(site, request)
    target = common.open_target(site, args.os_cloud)
    report = _reporter(args)
    try:
        result = scale(target.cloud, site, request, report,
                       pool_for=pool_factory(args, target, site.keypair))
    except KeyboardInterrupt:
        report.close()
        interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    finally:
        report.close()
    shown = ", ".join(f"{k}={v}" for k, v in result.parameters.items())
    if result.plan is not None:
        print(f"plan for stack {site.site} ({shown}):")
        print_plan(result.plan.lines())
        return 0
    plan = result.scale_in
    if plan is not None:
        print_plan(plan.lines())
    stack = result.stack
    wanted = result.wanted
    if result.action == "planned":
        print(f"dry run: the group would go from {len(plan.members) if plan else '?'} to "
              f"{wanted} workers; nothing was changed")
    elif result.action == "unchanged":
        print(f"stack {site.site}: no worker removed")
    elif result.action == "started":
        print(f"stack {site.site}: Heat accepted the resize to {wanted} workers; follow it "
              f"with `heatgen events {args.site} --follow` or `heatgen status {args.site}`")
    else:
        print(f"stack {site.site} {stack.status if stack else ''} in {result.elapsed:.1f} s; "
              f"workers: {wanted}")
    kept = result.busy_kept + result.unknown_kept
    if kept:
        parts = []
        if result.busy_kept:
            parts.append(f"{result.busy_kept} {'is' if result.busy_kept == 1 else 'are'} busy "
                         "(use --drain to drain them first, or --force to remove them with "
                         "their jobs)")
        if result.unknown_kept:
            parts.append(
                f"{result.unknown_kept} {'is' if result.unknown_kept == 1 else 'are'} not in the "
                "pool (never joined, or not reachable) while the pool lists none of this "
                "group's workers, so heatgen cannot tell idle from busy and keeps "
                f"{'it' if result.unknown_kept == 1 else 'them'} (check `condor_status` on the "
                "master; --force removes them anyway)"
            )
        print(f"heatgen: asked for {args.workers} workers, the group keeps {wanted}: "
              f"{kept} more would have had to go, but {'; '.join(parts)}", file=sys.stderr)
        return int(ExitStatus.BUSY_WORKERS_KEPT)
    return 0


def _delete(args: argparse.Namespace) -> int:
    from heatgen.config import load_site
    from heatgen.ops.delete import delete

    site = load_site(args.site)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"deleting stack {site.site} needs --yes when not on a terminal")
        if not confirm(f"delete stack {site.site} and every VM in it?"):
            print("nothing was deleted")
            return int(ExitStatus.USAGE)
    target = common.open_target(site, args.os_cloud)
    report = _reporter(args)
    try:
        final = delete(target.cloud, site, timeout=args.timeout, report=report,
                       wait=not args.no_wait)
    except KeyboardInterrupt:
        report.close()
        interrupted(args, site)
        return int(ExitStatus.INTERRUPTED)
    finally:
        report.close()
    print(f"stack {site.site} {final.status if final else 'DELETE_COMPLETE'}")
    return 0
