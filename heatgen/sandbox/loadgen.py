"""The sandbox's stand-in for Ceilometer: CPU samples for a deployed grid's workers.

For every worker of the group it keeps a Gnocchi ``instance`` resource (``server_group`` =
the stack id, ``ended_at`` set when the worker goes) written as Ceilometer writes it: by a
service user, carrying the stack owner's project and user, so Aodh lets the owner's alarms
see it. Every granularity bucket it pushes one cumulative ``cpu`` measure per worker that grows
by ``percent/100 * granularity * 1e9 * vcpus``, so ``rate:mean`` reads exactly the requested
load. A new worker's counter starts at the group's mean (a counter starting at 0 would make
the rate negative for a bucket); a restarted generator continues the stored counters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heatgen.contract import GridOutputs
from heatgen.errors import SandboxError, UsageError
from heatgen.units import cpu_nanoseconds

Progress = Callable[[str], None]
METRIC = "cpu"
RESOURCE_TYPE = "instance"


def increment(percent: float, granularity: int, vcpus: int) -> float:
    """Counter growth per bucket for ``percent`` CPU (CPU-nanoseconds over all vCPUs)."""
    return cpu_nanoseconds(percent, granularity, vcpus)


@dataclass
class LoadResult:
    samples: int = 0
    workers_seen: int = 0
    elapsed: float = 0.0
    log: list[str] = field(default_factory=list)


@dataclass
class LoadGenerator:
    """One generator for one stack; ``tick`` does one bucket's work."""

    gnocchi: Any
    stack_id: str
    project_id: str
    user_id: str
    workers: Callable[[], list[str]]  # server ids of the group's current members
    granularity: int
    vcpus: int
    percent: float
    archive_policy: str
    counters: dict[str, float] = field(default_factory=dict)
    progress: Progress | None = None
    # what the members carry as metering.server_group (default: the stack id)
    server_group: str | None = None
    # Per-worker load for the next bucket (server id -> percent); ``percent`` when None.
    percent_of: Callable[[str], float] | None = None

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def _last_value(self, resource_id: str) -> float | None:
        try:
            measures = self.gnocchi.metric.get_measures(
                METRIC, resource_id=resource_id, aggregation="mean", refresh=True
            )
        except Exception:  # noqa: BLE001 - no resource/metric yet
            return None
        return float(measures[-1][2]) if measures else None

    def _ensure(self, server_id: str) -> None:
        body = {
            "id": server_id, "project_id": self.project_id, "user_id": self.user_id,
            "server_group": self.server_group or self.stack_id,
            "display_name": f"worker-{server_id[:8]}",
            "flavor_id": "sandbox", "host": "sandbox",
            "metrics": {METRIC: {"archive_policy_name": self.archive_policy}},
        }
        try:
            self.gnocchi.resource.create(RESOURCE_TYPE, body)
        except Exception as error:
            # gnocchiclient's Conflict (ResourceAlreadyExists among them): it exists already.
            if getattr(error, "http_status", None) != 409 and getattr(error, "code", None) != 409:
                raise

    def _end(self, server_id: str) -> None:
        now = datetime.now(UTC).isoformat()
        try:
            self.gnocchi.resource.update(RESOURCE_TYPE, server_id, {"ended_at": now})
        except Exception as error:  # noqa: BLE001 - best effort, reported
            self._say(f"could not end resource {server_id}: {type(error).__name__}")

    def sync_members(self) -> None:
        current = set(self.workers())
        for gone in sorted(set(self.counters) - current):
            self._end(gone)
            del self.counters[gone]
            self._say(f"worker {gone[:8]} left the group")
        new = sorted(current - set(self.counters))
        if not new:
            return
        fresh = []
        for server_id in new:
            self._ensure(server_id)
            stored = self._last_value(server_id)
            if stored is None:
                fresh.append(server_id)
            else:
                self.counters[server_id] = stored
        # Counters continued from Gnocchi count towards the mean new workers start at.
        mean = (sum(self.counters.values()) / len(self.counters)) if self.counters else 0.0
        for server_id in fresh:
            self.counters[server_id] = mean
        for server_id in new:
            self._say(f"worker {server_id[:8]} joined (counter {self.counters[server_id]:.3g})")

    def push(self, when: datetime) -> int:
        """Advance every counter by one bucket and push it stamped ``when``."""
        batch: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for server_id in sorted(self.counters):
            percent = self.percent if self.percent_of is None else self.percent_of(server_id)
            self.counters[server_id] += increment(percent, self.granularity, self.vcpus)
            batch[server_id] = {
                METRIC: [{"timestamp": when.isoformat(), "value": self.counters[server_id]}]
            }
        if batch:
            self.gnocchi.metric.batch_resources_metrics_measures(batch)
        return len(batch)


def next_bucket(now: float, granularity: int, offset: float) -> float:
    """The next time ``offset`` seconds into a bucket (buckets aligned to the epoch)."""
    start = math.floor(now / granularity) * granularity + offset
    return start if start > now else start + granularity


def run(generator: LoadGenerator, *, duration: float | None, offset: float = 2.0,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        ) -> LoadResult:
    """One sample per bucket until ``duration`` ends (or Ctrl-C, which stops cleanly)."""
    result = LoadResult()
    started = clock()
    seen: set[str] = set()
    try:
        while True:
            generator.sync_members()
            seen.update(generator.counters)
            now = clock()
            result.samples += generator.push(datetime.fromtimestamp(now, UTC))
            wake = next_bucket(now, generator.granularity, offset)
            if duration is not None and wake - started > duration:
                break
            sleep(max(0.0, wake - clock()))
    except KeyboardInterrupt:
        generator._say("interrupted; stopping")
    result.workers_seen = len(seen)
    result.elapsed = clock() - started
    return result


def for_sandbox(site_path: Path, percent: float, *, state_dir: Path | None = None,
                progress: Progress | None = None, group: str | None = None) -> LoadGenerator:
    """A generator for one group of the site's stack in the sandbox (which must run
    ``--telemetry``)."""
    if not 0 <= percent <= 100:
        raise UsageError(f"--cpu: must be 0-100 (got {percent:g})")
    from heatgen.config import Telemetry, load_site
    from heatgen.render.parameters import server_group_value

    site = load_site(site_path)
    chosen = site.group(group)
    if chosen is None:
        names = ", ".join(g.name for g in site.groups)
        raise UsageError(f"--group: {site_path} has the worker groups {names}; name one"
                         if group is None else
                         f"--group {group}: {site_path} has no such worker group ({names})")
    if site.autoscaling.telemetry is not Telemetry.GNOCCHI:
        raise UsageError(
            f"{site_path}: autoscaling.telemetry is {site.autoscaling.telemetry.value}, but "
            "`heatgen sandbox load` feeds Gnocchi (the sandbox's telemetry has no Prometheus): "
            "it needs autoscaling.telemetry: gnocchi"
        )
    from gnocchiclient.v1 import client as gnocchi_client
    from heatclient import client as heat_client
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    from heatgen.sandbox import telemetry
    from heatgen.sandbox.control import session as admin_session
    from heatgen.sandbox.settings import resolve_config

    config = resolve_config(state_dir)
    secrets = telemetry.load_secrets(config)
    if not config.telemetry or secrets is None:
        raise SandboxError(
            f"the sandbox in {config.state_dir} runs no telemetry; start it with "
            "`heatgen sandbox up --telemetry --backend postgres`"
        )
    admin = admin_session(config)
    heat = heat_client.Client("1", session=admin)
    try:
        stack = heat.stacks.get(site.site)
    except Exception as error:  # noqa: BLE001
        raise SandboxError(f"stack {site.site} not found in the sandbox ({error})") from None
    auth = v3.Password(
        auth_url=config.auth_url, username="ceilometer",
        password=secrets.ceilometer_password, user_domain_name="Default",
        project_name="service", project_domain_name="Default",
    )
    gnocchi = gnocchi_client.Client(session=ks_session.Session(auth=auth, timeout=30))

    def workers() -> list[str]:
        listed = heat.stacks.get(stack.id).to_dict().get("outputs") or []
        outputs = {o.get("output_key"): o.get("output_value") for o in listed}
        return list((GridOutputs.of(outputs, chosen.names).worker_server_ids or {}).values())

    return LoadGenerator(
        gnocchi=gnocchi, stack_id=stack.id, project_id=admin.get_project_id(),
        user_id=admin.get_user_id(), workers=workers,
        granularity=site.autoscaling.granularity, vcpus=chosen.vcpus, percent=percent,
        archive_policy=telemetry.ARCHIVE_POLICY, progress=progress,
        server_group=server_group_value(chosen).replace("__STACK_ID__", stack.id),
    )


def run_for_site(site_path: Path, percent: float, *, duration: float | None = None,
                 state_dir: Path | None = None, progress: Progress | None = None,
                 group: str | None = None) -> LoadResult:
    generator = for_sandbox(site_path, percent, state_dir=state_dir, progress=progress,
                            group=group)
    return run(generator, duration=duration)
