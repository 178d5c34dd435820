"""``heatgen autoscale``: the queue-mode decision loop over the real cloud and pool.

Each decision reads the groups' members from Heat, the machines and the idle jobs from the
pool, asks the planner (:mod:`heatgen.autoscale.planner`) and acts: grows a group with a
PATCH of its size, drains idle members, removes members drained at an earlier decision that
are still idle (marked unhealthy, the pool re-checked, the group PATCHed to its absolute size:
the same guarded path as `heatgen scale`), and cancels its own drains that caught a job. One
decision at a time per stack (the stack's lock, as `heatgen scale` takes it); a stack that is
busy is left for the next interval. Every decision writes one record.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heatgen.autoscale.match import Matcher
from heatgen.autoscale.planner import DRAIN_REASON, Decision, GroupView, as_dict, decide
from heatgen.cloud.group import group_members
from heatgen.cloud.interface import Cloud, Stack
from heatgen.config import Mode, Site
from heatgen.errors import CloudError, HeatgenError, StackBusy, UsageError
from heatgen.ops.busy import stack_lock
from heatgen.ops.inspect import require_stack
from heatgen.ops.report import Clock, Reporter
from heatgen.ops.scale import ScaleRequest, remove_members, replace_members, scale
from heatgen.pool import PoolQuery
from heatgen.scalein import shrink

BACKOFF_AFTER = 3  # failed actions in a row before a group backs off
BACKOFF_START = 60.0  # seconds; doubles with each further failure


@dataclass
class LoopState:
    """What the loop remembers between decisions, and its counters."""

    grew_at: dict[str, float] = field(default_factory=dict)
    # members drained at the latest decision (the collector may lag behind the startd)
    drain_requested: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)
    backoff_until: dict[str, float] = field(default_factory=dict)
    decisions: int = 0
    added: int = 0
    removed: int = 0
    drained: int = 0
    replaced: int = 0
    failed_decisions: int = 0
    unmatched: int = 0

    def failed(self, group: str, now: float) -> str:
        count = self.failures.get(group, 0) + 1
        self.failures[group] = count
        if count >= BACKOFF_AFTER:
            delay = BACKOFF_START * 2 ** (count - BACKOFF_AFTER)
            self.backoff_until[group] = now + delay
            return f"; {count} failures in a row: group {group} backs off for {delay:.0f} s"
        return ""

    def succeeded(self, group: str) -> None:
        self.failures.pop(group, None)
        self.backoff_until.pop(group, None)


@dataclass(frozen=True)
class Outcome:
    """One decision and what was done about it (``actions``) or skipped (``skipped``)."""

    decision: Decision | None
    actions: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = as_dict(self.decision) if self.decision else {
            "time": time.time(), "groups": [], "unserved": [], "matched_soon": [],
            "not_yet_seen": []}
        record["actions"] = list(self.actions)
        record["skipped"] = list(self.skipped)
        record["dry_run"] = self.dry_run
        return record


def check_queue_mode(site: Site, label: str) -> None:
    if site.autoscaling.mode is not Mode.QUEUE:
        raise UsageError(
            f"{label}: autoscaling.mode is {site.autoscaling.mode.value}: its groups follow "
            "Aodh's CPU alarms; heatgen autoscale needs autoscaling.mode: queue (deploy the "
            "change first: queue mode renders no CPU alarms)"
        )


def views_of(site: Site, cloud: Cloud, stack: Stack, state: LoopState) -> list[GroupView]:
    members = group_members(cloud, stack)
    requested = frozenset(state.drain_requested)
    state.drain_requested = set()  # one decision of grace: after it, the ads are trusted
    return [GroupView(group, tuple(m for m in members if m.group == group.name),
                      state.grew_at.get(group.name), state.backoff_until.get(group.name),
                      requested)
            for group in site.groups]


def decide_once(cloud: Cloud, site: Site, stack: Stack, pool: PoolQuery, state: LoopState,
                now: float, matcher: Matcher | None = None) -> Decision:
    """Read the members and the pool and decide (no change is made)."""
    machines = pool.machines()
    queue = pool.queue()
    return decide(views_of(site, cloud, stack, state), machines, queue, now,
                  matcher or Matcher())


def step(
    cloud: Cloud, site: Site, pool_for: Callable[[Stack], PoolQuery | None], state: LoopState,
    report: Reporter, *, dry_run: bool = False, clock: Clock | None = None,
    now: Callable[[], float] = time.time, timeout: float = 1800.0,
    matcher: Matcher | None = None,
) -> Outcome:
    """One decision, and (unless ``dry_run``) its actions. Failures are recorded in the
    outcome, never raised: the loop goes on at the next interval."""
    clock = clock or Clock()
    state.decisions += 1
    try:
        stack = require_stack(cloud, site)
        pool = pool_for(stack)
        if pool is None:
            raise CloudError(f"stack {site.site} has no master address to reach its pool by")
        decision = decide_once(cloud, site, stack, pool, state, now(), matcher)
    except HeatgenError as error:
        state.failed_decisions += 1
        return Outcome(None, skipped=(f"no decision: {error}",), dry_run=dry_run)
    state.unmatched = len(decision.unserved)
    if dry_run:
        return Outcome(decision, dry_run=True)
    if stack.in_progress:
        return Outcome(decision, skipped=(
            f"stack {stack.name} is {stack.status}: nothing done, the next decision looks "
            "again",))
    actions: list[str] = []
    skipped: list[str] = []
    try:
        with stack_lock(stack, wait=False, timeout=0, report=report, clock=clock):
            if _take_back_stale_marks(cloud, stack, actions, skipped):
                # members of the decision changed state: act on a fresh look next time
                return Outcome(decision, tuple(actions), tuple(skipped))
            _act(cloud, site, stack, pool, decision, state, report, clock, now, timeout,
                 actions, skipped)
    except StackBusy as error:
        skipped.append(f"{error}: nothing done, the next decision looks again")
    return Outcome(decision, tuple(actions), tuple(skipped))


def _take_back_stale_marks(cloud: Cloud, stack: Stack, actions: list[str],
                           skipped: list[str]) -> bool:
    """Marks a killed `heatgen scale` or `autoscale` left between marking and the PATCH
    (:func:`shrink.take_back_stale_marks`); True if there were any."""
    result = shrink.take_back_stale_marks(cloud, stack)
    for member in result.taken:
        actions.append(f"{member.group}: took back the mark an interrupted heatgen left on "
                       f"{member.name}")
    for member, error in result.failed:
        skipped.append(f"{member.group}: the mark on {member.name} could not be taken back "
                       f"({error}); nothing else is done until it is")
    return bool(result.taken or result.failed)


def _act(
    cloud: Cloud, site: Site, stack: Stack, pool: PoolQuery, decision: Decision,
    state: LoopState, report: Reporter, clock: Clock, now: Callable[[], float],
    timeout: float, actions: list[str], skipped: list[str],
) -> None:
    options = shrink.ScaleInOptions(now=now)
    for group in decision.groups:
        members = {m.name: m for m in group.members}
        failed = ""
        try:
            if group.replace:
                replace_members(cloud, site, stack, group.name, group.replace, report, clock,
                                timeout)
                state.replaced += len(group.replace)
                # a member that never joined is a failure of the group: repeated, it backs off
                failed = state.failed(group.name, now())
                actions.append(f"{group.name}: replaced {', '.join(group.replace)} (never "
                               f"joined the pool){failed}")
                stack = cloud.get_stack(stack.id) or stack
            if group.undrain:
                machines = [m for m in pool.machines()
                            if any(m.name in members[n].machines for n in group.undrain)]
                pool.cancel_drain(machines)
                actions.append(f"{group.name}: cancelled the drain of "
                               f"{', '.join(group.undrain)}")
            if group.remove:
                result = remove_members(cloud, site, stack, pool, group.name, group.remove,
                                        report, clock, timeout, options)
                gone = result.scale_in.removed if result.scale_in else ()
                state.removed += len(gone)
                kept = sorted(set(group.remove) - set(gone))
                actions.append(f"{group.name}: removed {', '.join(gone) or 'none'}"
                               + (f" (kept {', '.join(kept)}: claimed meanwhile)" if kept else "")
                               + f"; size {result.wanted}")
                stack = cloud.get_stack(stack.id) or stack
            if group.drain:
                machines = [m for m in pool.machines()
                            if any(m.name in members[n].machines for n in group.drain)]
                pool.drain(machines, graceful=True, reason=DRAIN_REASON)
                state.drained += len(group.drain)
                state.drain_requested.update(group.drain)
                actions.append(f"{group.name}: drained {', '.join(group.drain)} (removed at the "
                               "next decision if still idle)")
            if group.grow:
                request = ScaleRequest(workers=group.target, group=group.name, timeout=timeout,
                                       site_label=site.site, lock_held=True)
                result = scale(cloud, site, request, report, clock)
                state.added += group.target - group.size
                state.grew_at[group.name] = now()
                actions.append(f"{group.name}: grew {group.size} -> {result.wanted}")
                # a resize's final stack has no outputs, which the next group's step reads
                stack = cloud.get_stack(stack.id) or stack
            if not group.replace:
                state.succeeded(group.name)
        except HeatgenError as error:
            more = state.failed(group.name, now())
            skipped.append(f"{group.name}: {group.action} failed: {error}{more}")


def record_text(outcome: Outcome) -> str:
    """A decision for people: one line per group, the jobs not served, what was done."""
    lines = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
        outcome.decision.now if outcome.decision else time.time()))
    lines.append(f"decision at {stamp}" + (" (dry run: nothing changed)" if outcome.dry_run
                                           else ""))
    decision = outcome.decision
    if decision is not None:
        for group in decision.groups:
            lines.append(f"  {group.name}: {group.size} -> {group.target} ({group.action}): "
                         f"{group.reason}")
            for member in group.members:
                if member.action != "keep" or member.state in ("missing", "draining"):
                    lines.append(f"    {member.action:<8} {member.name} ({member.state}): "
                                 f"{member.reason}")
        if decision.matched_soon:
            lines.append(f"  {len(decision.matched_soon)} jobs fit a free slot: the "
                         "negotiator matches them")
        if decision.not_yet_seen:
            lines.append(f"  {len(decision.not_yet_seen)} jobs queued after the negotiator's "
                         "last cycle: looked at next time")
        for job, why in decision.unserved:
            lines.append(f"  job {job} not served: {why}")
    lines += [f"  done: {action}" for action in outcome.actions]
    lines += [f"  skipped: {why}" for why in outcome.skipped]
    return "\n".join(lines)


def status_text(outcome: Outcome, state: LoopState, stack: str) -> str:
    """The latest decision and the counters, in Prometheus text format (node_exporter's
    textfile collector)."""
    label = f'stack="{stack}"'
    metrics = [
        ("heatgen_autoscale_decisions_total", "counter", "Decisions made", state.decisions),
        ("heatgen_autoscale_failed_decisions_total", "counter",
         "Decisions that could not read the cloud or the pool", state.failed_decisions),
        ("heatgen_autoscale_members_added_total", "counter", "Members added", state.added),
        ("heatgen_autoscale_members_removed_total", "counter", "Members removed",
         state.removed),
        ("heatgen_autoscale_members_drained_total", "counter", "Members drained for removal",
         state.drained),
        ("heatgen_autoscale_members_replaced_total", "counter",
         "Members replaced because they never joined the pool", state.replaced),
        ("heatgen_autoscale_jobs_unmatched", "gauge",
         "Idle jobs that fit no group at the latest decision", state.unmatched),
    ]
    lines = []
    for name, kind, text, value in metrics:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name}{{{label}}} {value}"]
    decision = outcome.decision
    if decision is not None:
        lines += ["# HELP heatgen_autoscale_group_size Members of each group at the decision",
                  "# TYPE heatgen_autoscale_group_size gauge"]
        lines += [f'heatgen_autoscale_group_size{{{label},group="{g.name}"}} {g.size}'
                  for g in decision.groups]
        lines += ["# HELP heatgen_autoscale_group_target Size each group was set to",
                  "# TYPE heatgen_autoscale_group_target gauge"]
        lines += [f'heatgen_autoscale_group_target{{{label},group="{g.name}"}} {g.target}'
                  for g in decision.groups]
        lines += ["# HELP heatgen_autoscale_last_decision_seconds When the latest decision ran",
                  "# TYPE heatgen_autoscale_last_decision_seconds gauge",
                  f"heatgen_autoscale_last_decision_seconds{{{label}}} {decision.now:.0f}"]
    lines.append("# latest decision: " + json.dumps(outcome.as_dict(), sort_keys=True))
    return "\n".join(lines) + "\n"


def write_status(path: Path, text: str) -> None:
    """Replace ``path`` atomically (the collector never reads half a file)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as error:
        raise UsageError(f"--status-file {path}: cannot write it ({error.strerror})") from None
