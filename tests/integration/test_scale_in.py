"""Scale-in that never removes a busy worker, on a real Heat (the sandbox).

No VM boots in the sandbox, so the pool is a recording: `condor_status -json` output in
HTCondor's exact format (written by tests/data/condor/capture.py with HTCondor's own ClassAd
serializer), with the live group members' server ids in `HeatGenServerId`. Everything on the
Heat side is real: the members, the marks, the PATCH, the removal order.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from heatgen.cloud.group import Member, group_members
from heatgen.cloud.interface import Stack
from heatgen.config import load_site
from heatgen.errors import WaitTimeout
from heatgen.ops.report import SilentReporter
from heatgen.ops.scale import ScaleRequest, scale
from heatgen.sandbox.recording import RecordedPool
from heatgen.scalein.shrink import ScaleInOptions

from .conftest import REPO, Sandbox

pytestmark = pytest.mark.sandbox

CAPTURE = REPO / "tests" / "data" / "condor" / "capture.py"
# The proof is 20 rounds (about 9 minutes here); CI runs fewer, the figure is printed.
ROUNDS = int(os.environ.get("HEATGEN_SCALEIN_ROUNDS", "2"))


def _capture() -> Any:
    pytest.importorskip("classad2", reason="needs the htcondor package (test extra)")
    spec = importlib.util.spec_from_file_location("heatgen_condor_capture", CAPTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pool_snapshot(members: Sequence[Member], busy: set[str],
                  free_since: dict[str, int], draining: Sequence[str] = (),
                  drained: Sequence[str] = ()) -> str:
    """`condor_status -json` of the group's workers as HTCondor would print it."""
    capture = _capture()
    now = int(time.time())
    workers = []
    for index, member in enumerate(members, start=1):
        since = now - free_since[member.name]
        if member.name in drained:
            worker = capture.Worker(index, free_since=since, state="Drained", activity="Idle",
                                    state_since=since, activity_since=now - 5)
        elif member.name in draining:
            job = capture.Job(now - 500, activity="Retiring", activity_since=now - 60)
            worker = capture.Worker(index, free_since=since, state="Drained",
                                    activity="Retiring", state_since=now - 60,
                                    activity_since=now - 60, jobs=[job])
        elif member.name in busy:
            worker = capture.Worker(index, free_since=since, jobs=[capture.Job(now - 900)])
        else:
            worker = capture.Worker(index, free_since=since)
        workers.append(worker)
    text = capture.Scenario("live", tuple(workers), taken_at=now).render()
    for index, member in enumerate(members, start=1):
        assert member.server_id, f"{member.name} has no server id in the stack outputs"
        text = text.replace(capture.server_id(index), member.server_id)
    return str(text)


@pytest.fixture(scope="module")
def grid(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A deployed 5-worker grid and a Cloud on the sandbox."""
    from heatgen.ops.deploy import DeployOptions, deploy
    from heatgen.render import render_site
    from heatgen.sandbox import hooks

    path = tmp_path_factory.mktemp("scalein") / "site.yaml"
    text = (REPO / "examples" / "thesis.yaml").read_text()
    path.write_text(text.replace("site: bergen-grid", "site: scalein-grid")
                    .replace("desired: 1", "desired: 5"))
    site = load_site(path)
    cloud = hooks.open_sandbox(sandbox.config).cloud
    report = SilentReporter()
    deploy(cloud, render_site(site), DeployOptions(extra_environments=hooks.environments(cloud)),
           report, watcher=hooks.master(cloud, report))
    yield site, cloud, path
    stack = cloud.get_stack(site.site)
    if stack is not None:
        cloud.delete_stack(stack.id)


def _resize(site: Any, cloud: Any, workers: int, pool: Any = None, **options: Any) -> Any:
    request = ScaleRequest(workers=workers, **options)
    return scale(cloud, site, request, SilentReporter(),
                 pool_for=(lambda stack: pool) if pool is not None else None,
                 scale_in_options=ScaleInOptions(sleep=lambda s: None))


def _members(cloud: Any, site: Any) -> list[Member]:
    stack = cloud.get_stack(site.site)
    assert isinstance(stack, Stack)
    return group_members(cloud, stack)


def _back_to_five(site: Any, cloud: Any) -> list[Member]:
    if len(_members(cloud, site)) != 5:
        _resize(site, cloud, 5)
    members = _members(cloud, site)
    assert len(members) == 5
    assert all(m.status != "CHECK_FAILED" for m in members)
    return members


def test_scale_in_removes_only_idle_workers_20_random_rounds(grid: Any) -> None:
    site, cloud, _ = grid
    rng = random.Random(20170601)
    busy_removed = 0
    rounds = []
    started = time.monotonic()
    for _ in range(ROUNDS):
        members = _back_to_five(site, cloud)
        busy = set(rng.sample([m.name for m in members], 2))
        ages = rng.sample(range(60, 50_000), len(members))
        free_since = {m.name: age for m, age in zip(members, ages, strict=True)}
        pool = RecordedPool([pool_snapshot(members, busy, free_since)])
        result = _resize(site, cloud, 3, pool)
        remaining = {m.name for m in _members(cloud, site)}
        busy_removed += len(busy - remaining)
        idle = [m.name for m in members if m.name not in busy]
        # The policy removes the idle longest first, so it keeps the most recently idle one.
        kept_idle = min(idle, key=lambda name: free_since[name])
        assert remaining == busy | {kept_idle}, (busy, free_since, remaining)
        assert result.action == "scaled" and result.busy_kept == 0
        rounds.append(sorted(busy))
    print(f"\nscale-in: {ROUNDS} rounds of 5 -> 3 workers with 2 random busy members: "
          f"{busy_removed} busy members removed, {time.monotonic() - started:.0f} s")
    assert busy_removed == 0
    assert len({tuple(r) for r in rounds}) > 1  # the busy sets really varied


def test_not_enough_idle_workers_keeps_the_busy_ones(grid: Any) -> None:
    site, cloud, _ = grid
    members = _back_to_five(site, cloud)
    busy = {m.name for m in members[:4]}
    pool = RecordedPool([pool_snapshot(members, busy, {m.name: 600 for m in members})])
    result = _resize(site, cloud, 2, pool)
    # Asked to remove 3 with 1 idle: the idle one goes, 2 more would have had to be busy ones.
    assert result.busy_kept == 2
    assert [v.member.name for v in result.scale_in.busy_kept] == \
        [v.member.name for v in result.scale_in.not_removable][:2]
    remaining = {m.name for m in _members(cloud, site)}
    assert remaining == busy
    assert result.parameters["worker_desired"] == 4


def test_worker_claimed_between_query_and_patch_is_kept_and_unmarked(grid: Any) -> None:
    site, cloud, _ = grid
    members = _back_to_five(site, cloud)
    ages = {m.name: 1000 * (i + 1) for i, m in enumerate(members)}
    longest_idle = max(ages, key=lambda name: ages[name])
    before = pool_snapshot(members, set(), ages)
    after = pool_snapshot(members, {longest_idle}, ages)
    result = _resize(site, cloud, 4, RecordedPool([before, after]))
    assert result.scale_in is not None and result.scale_in.choice.dropped == (longest_idle,)
    assert result.action == "unchanged"
    now = _members(cloud, site)
    assert {m.name for m in now} == {m.name for m in members}
    assert all(m.status != "CHECK_FAILED" for m in now), "the claimed member was unmarked"


def test_drain_waits_for_busy_workers_to_become_idle(grid: Any) -> None:
    site, cloud, _ = grid
    members = _back_to_five(site, cloud)
    ages = {m.name: 600 for m in members}
    busy = {m.name for m in members[:3]}
    # Jobs claimed at the same time: the newest busy member has the least work to lose.
    target = members[2].name
    pool = RecordedPool([
        pool_snapshot(members, busy, ages),
        pool_snapshot(members, busy - {target}, ages, draining=[target]),
        pool_snapshot(members, busy - {target}, ages, drained=[target]),
    ])
    result = _resize(site, cloud, 2, pool, drain=True)
    assert [r.machines for r in pool.drain_requests] == [("demo-worker-3.novalocal",)]
    assert pool.drain_requests[0].graceful is True
    remaining = {m.name for m in _members(cloud, site)}
    assert target not in remaining and remaining == busy - {target}
    assert result.busy_kept == 0


def test_drain_that_never_finishes_removes_nothing(grid: Any) -> None:
    site, cloud, _ = grid
    members = _back_to_five(site, cloud)
    busy = {m.name for m in members}
    pool = RecordedPool([pool_snapshot(members, busy, {m.name: 600 for m in members})])
    with pytest.raises(WaitTimeout, match="still run jobs after 0 s of draining"):
        _resize(site, cloud, 4, pool, drain=True, drain_timeout=0)
    assert len(_members(cloud, site)) == 5


def test_force_removes_busy_workers_and_says_so(grid: Any) -> None:
    site, cloud, _ = grid
    members = _back_to_five(site, cloud)
    busy = {m.name for m in members}
    pool = RecordedPool([pool_snapshot(members, busy, {m.name: 600 for m in members})])
    notes: list[str] = []

    class Notes(SilentReporter):
        def note(self, message: str) -> None:
            notes.append(message)

    result = scale(cloud, site, ScaleRequest(workers=4, force=True), Notes(),
                   pool_for=lambda stack: pool)
    assert len(result.scale_in.forced) == 1 if result.scale_in else False
    assert any(n.startswith("WARNING: --force removes BUSY worker") for n in notes)
    assert len(_members(cloud, site)) == 4


def test_cli_scale_in_reports_busy_kept_with_exit_6(
    grid: Any, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    from heatgen.cli import main

    site, cloud, path = grid
    members = _back_to_five(site, cloud)
    busy = {m.name for m in members[:4]}
    recording = tmp_path / "pool.json"
    recording.write_text(pool_snapshot(members, busy, {m.name: 600 for m in members}))
    monkeypatch.setenv("HEATGEN_SANDBOX_DIR", str(sandbox.config.state_dir))
    monkeypatch.setenv("HEATGEN_POOL_RECORDING", str(recording))
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    code = main(["scale", str(path), "--workers", "3", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 6  # a dry run ends as the real run would
    assert "dry run: the group would go from 5 to 4 workers; nothing was changed" in out
    assert len(_members(cloud, site)) == 5
    code = main(["scale", str(path), "--workers", "3"])
    out, err = capsys.readouterr()
    assert code == 6
    assert "heatgen: asked for 3 workers, the group keeps 4: 1 more would have had to go, but " \
           "1 is busy" in err
    assert "--drain" in err
    assert len(_members(cloud, site)) == 4
