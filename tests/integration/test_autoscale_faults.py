"""`heatgen autoscale` on a flaky day, on the real-pool sandbox: 20 % of its Keystone and Heat
requests fail (the fault proxy of the fault suite) and for a while the pool cannot be reached
(the master drops ssh), over 30 decisions. No busy worker is removed, no member is left marked,
and every decision that failed says what it skipped and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import chaos, proxied_sandbox

from .conftest import Sandbox
from .test_autoscale import Heat, deployed, queue_site, submitter
from .test_pool import _hosts, _jobs, _on_master, _outputs, _until

pytestmark = [pytest.mark.sandbox, pytest.mark.pool]

STACK = "flaky-grid"
DECISIONS = int(os.environ.get("HEATGEN_FLAKY_DECISIONS", "30"))
LONG_JOB_SECONDS = 200  # keeps one worker busy through most of the decisions
SHORT_JOBS, SHORT_JOB_SECONDS = 2, 25
OUTAGE_SECONDS = 30
# A table of the test's own in the master's network namespace: it drops ssh, nothing else
OUTAGE_TABLE = "heatgen_test_outage"
HEATGEN = [sys.executable, "-m", "heatgen"]


@pytest.fixture
def grid(pool_sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    site = queue_site(tmp_path, STACK, scaling="  interval: 5\n  idle_timeout: 15\n"
                                                 "  join_timeout: 300\n")
    with deployed(pool_sandbox, env, site):
        yield site


def _outage(sandbox: Sandbox, master: str, on: bool) -> None:
    """The master drops (``on``) or takes again incoming ssh: heatgen cannot reach the pool,
    the pool itself goes on."""
    hosts = _hosts(sandbox)
    hosts.run(master, ["nft", "delete", "table", "inet", OUTAGE_TABLE], timeout=30)
    if on:
        rules = (f"table inet {OUTAGE_TABLE} {{\n chain input {{\n"
                 "  type filter hook input priority -50; policy accept;\n"
                 "  tcp dport 22 drop\n }\n}\n")
        done = hosts.run(master, ["nft", "-f", "-"], input_text=rules, timeout=30)
        assert done.returncode == 0, done.stderr


def test_thirty_decisions_on_a_flaky_day_keep_busy_workers_and_leave_no_mark(
    pool_sandbox: Sandbox, env: dict[str, str], grid: Path, tmp_path: Path
) -> None:
    _until("the first worker in the pool", lambda: "1" == _on_master(
        pool_sandbox, STACK, "sh", "-c", "condor_status -af Machine | sort -u | wc -l").strip())
    cpus = submitter(pool_sandbox, STACK, "carol")
    # One long job and two short ones, a whole worker each: the group grows to 3, the short
    # jobs' workers go idle and go, the long job's worker stays busy through the faults.
    common = (f"executable = /bin/sleep\nrequest_cpus = {cpus}\nrequest_memory = 32\n"
              "request_disk = 1024\ntransfer_executable = false\n"
              "should_transfer_files = YES\nwhen_to_transfer_output = ON_EXIT\n"
              "log = /home/carol/jobs.log\n")
    submit = (f"{common}arguments = {LONG_JOB_SECONDS}\nqueue 1\n"
              f"arguments = {SHORT_JOB_SECONDS}\nqueue {SHORT_JOBS}\n")
    _on_master(pool_sandbox, STACK, "su", "-s", "/bin/sh", "carol", "-c",
               "cd /home/carol && cat > job.sub && condor_submit job.sub", input_text=submit)
    _until("the long job running", lambda: any(
        j["JobStatus"] == 2 for j in _jobs(pool_sandbox, STACK)), 120)
    [long_job] = [j for j in _jobs(pool_sandbox, STACK) if j["JobStatus"] == 2]
    busy_host = str(long_job["RemoteHost"]).split("@")[-1]
    busy_id = _on_master(pool_sandbox, STACK, "condor_status", "-constraint",
                         f'Machine == "{busy_host}"', "-af", "HeatGenServerId").split()[0]
    master = str(_outputs(pool_sandbox, STACK)["master_id"])

    with proxied_sandbox(pool_sandbox.config, tmp_path, seed=7) as proxied:
        proxied.set_rules(chaos(0.2))
        flaky = {**env, "OS_CLIENT_CONFIG_FILE": str(proxied.clouds_yaml),
                 "OS_CLOUD": "heatgen-sandbox"}
        loop = subprocess.Popen(
            [*HEATGEN, "autoscale", str(grid), "--format", "json", "--decisions",
             str(DECISIONS), "--timeout", "300"],
            env=flaky, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        records: list[dict[str, Any]] = []
        outage: list[float] = []
        try:
            assert loop.stdout is not None
            for line in loop.stdout:
                if not line.startswith("{"):
                    continue
                records.append(json.loads(line))
                if len(records) == 8 and not outage:
                    _outage(pool_sandbox, master, True)
                    outage.append(time.monotonic())
                elif outage and len(outage) == 1 and \
                        time.monotonic() - outage[0] >= OUTAGE_SECONDS:
                    _outage(pool_sandbox, master, False)
                    outage.append(time.monotonic())
            loop.wait(timeout=900)
        finally:
            if loop.poll() is None:
                loop.kill()
                loop.wait(timeout=60)
            _outage(pool_sandbox, master, False)
            err = loop.stderr.read() if loop.stderr else ""
            for index, record in enumerate(records):
                print(index, json.dumps({
                    "groups": [(g["size"], g["target"], g["action"],
                                [(m["name"], m["state"], m["action"]) for m in g["members"]])
                               for g in record["groups"]],
                    "actions": record["actions"], "skipped": record["skipped"]}))
            print(err[-4000:])
        faults = proxied.faults()
    print(f"faults injected: {dict(faults)}; outage {outage}")

    assert loop.returncode == 0, err
    assert "Traceback" not in err, err
    assert len(records) == DECISIONS, len(records)
    assert len(outage) == 2, "the outage never ended: the loop stopped during it"
    assert sum(faults.values()) > 0
    # Every decision either decided or says why not; every failed action says what and why.
    failed = [r for r in records if not r["groups"]]
    for record in failed:
        [why] = record["skipped"]
        assert why.startswith("no decision: ") and len(why) > len("no decision: ") + 10, why
    for record in records:
        for why in record["skipped"]:
            assert why.strip() and ("failed" in why or "no decision: " in why or "busy" in why
                                    or "could not" in why or "nothing done" in why), why
    # The outage was seen for what it was.
    unreachable = [why for r in failed for why in r["skipped"] if "ssh" in why
                   or "did not finish within" in why]
    assert unreachable, [r["skipped"] for r in failed]
    # Growth happened despite the faults: the loop did something to be kept safe from.
    assert any(": grew " in a for r in records for a in r["actions"]), \
        [r["actions"] for r in records]

    # After the day: nothing marked, the long job's worker still there, every job ran once.
    assert Heat.of(pool_sandbox, STACK).marks() == {}
    stack = pool_sandbox.heat.stacks.get(STACK)
    assert stack.stack_status.endswith("_COMPLETE"), stack.stack_status
    assert busy_id in _outputs(pool_sandbox, STACK)["worker_server_ids"].values()
    _until("every job done", lambda: all(
        j.get("JobStatus") == 4 for j in _jobs(pool_sandbox, STACK)), 400)
    jobs = _jobs(pool_sandbox, STACK)
    assert len(jobs) == 1 + SHORT_JOBS and all(j["NumJobStarts"] == 1 for j in jobs), jobs
    log = _on_master(pool_sandbox, STACK, "cat", "/home/carol/jobs.log")
    assert "Job was evicted" not in log and "Job was aborted" not in log, log

