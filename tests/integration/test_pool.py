"""A real HTCondor pool in the sandbox (`up --pool`): boot payloads run, workers join, jobs run,
and scale-in keeps busy workers with their jobs running, against real daemons.

Every server Heat creates boots its rendered user data as a sandbox host (namespaces over a
Debian 13 root with Debian's HTCondor 23.9); nothing here is recorded or stubbed but the
clouds' APIs for compute and network, which the pool agent plays.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from heatgen.cli import main

from .conftest import REPO, Sandbox, heatgen_runner

pytestmark = [pytest.mark.sandbox, pytest.mark.pool]

DEBIAN13 = REPO / "examples" / "debian13.yaml"
ROUNDS = int(os.environ.get("HEATGEN_POOL_ROUNDS", "2"))
# Jobs start within seconds: a negotiation cycle every 5 s instead of HTCondor's 60.
FAST_NEGOTIATOR = '  extra_config: ["NEGOTIATOR_INTERVAL = 5", "NEGOTIATOR_CYCLE_DELAY = 5"]\n'


@pytest.fixture
def cli(pool_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    monkeypatch.setenv("HEATGEN_SANDBOX_DIR", str(pool_sandbox.config.state_dir))
    return heatgen_runner(capsys)


def _site(tmp_path: Path, name: str, **replace: str) -> Path:
    text = DEBIAN13.read_text().replace("site: debian13-grid", f"site: {name}")
    text = text.replace('  version: "23.9"\n', '  version: "23.9"\n' + FAST_NEGOTIATOR)
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _outputs(sandbox: Sandbox, stack: str) -> dict[str, Any]:
    shown = sandbox.heat.stacks.get(stack)
    return {o["output_key"]: o.get("output_value") for o in shown.outputs or []}


def _hosts(sandbox: Sandbox) -> Any:
    from heatgen.sandbox.pool import network

    return network.hosts_of(sandbox.config)


def _on_master(sandbox: Sandbox, stack: str, *command: str, input_text: str | None = None,
               ) -> str:
    master = str(_outputs(sandbox, stack)["master_id"])
    done = _hosts(sandbox).run(master, list(command), input_text=input_text, timeout=120)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


def _pool(cli: Any, site: Path) -> dict[str, Any]:
    code, out, err = cli("pool", str(site), "--format", "json")
    assert code == 0, err
    return dict(json.loads(out))


def _until(what: str, check: Callable[[], bool], timeout: float = 180.0,
           explain: Callable[[], str] | None = None, poll: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            detail = explain() if explain is not None else ""
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s\n{detail}")
        time.sleep(poll)


def _jobs(sandbox: Sandbox, stack: str) -> list[dict[str, Any]]:
    """Every job of the schedd, queued or done: id, status, starts, where it ran."""
    attributes = ("ClusterId,ProcId,JobStatus,NumJobStarts,RemoteHost,LastRemoteHost,"
                  "JobCurrentStartDate")
    queued = _on_master(sandbox, stack, "condor_q", "-allusers", "-json", "-attributes",
                        attributes)
    done = _on_master(sandbox, stack, "condor_history", "-json", "-attributes", attributes)
    return [*json.loads(queued or "[]"), *json.loads(done or "[]")]


@pytest.fixture(scope="module")
def grid(pool_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One grid for the module's tests, in order (each leaves it as the next expects)."""
    site = _site(tmp_path_factory.mktemp("pool-grid"), "pool-grid")
    saved = os.environ.get("HEATGEN_SANDBOX_DIR")
    os.environ["HEATGEN_SANDBOX_DIR"] = str(pool_sandbox.config.state_dir)
    try:
        started = time.monotonic()
        assert main(["deploy", str(site)]) == 0
        print(f"deploy with a real master and one worker: {time.monotonic() - started:.1f} s")
        yield site
        main(["delete", str(site), "--yes"])
        _until("hosts gone", lambda: _hosts(pool_sandbox).server_ids() == [], 30)
    finally:
        if saved is None:
            os.environ.pop("HEATGEN_SANDBOX_DIR", None)
        else:
            os.environ["HEATGEN_SANDBOX_DIR"] = saved


def test_the_masters_payload_signals_and_a_worker_joins_with_its_server_id(
    pool_sandbox: Sandbox, cli: Any, grid: Path
) -> None:
    outputs = _outputs(pool_sandbox, "pool-grid")
    network = _hosts(pool_sandbox).network
    master_ip = outputs["master_private_ip"]
    assert master_ip.startswith(str(network.private.network_address)[:-1])
    assert outputs["master_floating_ip"].startswith(str(network.floating.network_address)[:-1])
    ready = json.loads(outputs["wait_condition_data"])["master"]
    assert f"private_ip={master_ip}" in ready and "condor_version=23.9." in ready
    [(member, server_id)] = outputs["worker_server_ids"].items()
    assert outputs["worker_private_ips"][member].startswith("10.77.")
    # The deploy ends when Heat has made the servers; the worker joins the pool after booting.
    _until("the worker in the pool", lambda: _pool(cli, grid)["members"][0]["in_pool"], 120)
    view = _pool(cli, grid)
    [shown] = view["members"]
    assert shown["server_id"] == server_id and shown["in_pool"], view
    assert view["strangers"] == []


def test_workers_join_and_a_host_without_the_token_is_refused(
    pool_sandbox: Sandbox, cli: Any, grid: Path
) -> None:
    started = time.monotonic()
    code, out, err = cli("scale", str(grid), "--workers", "3")
    assert code == 0, err
    _until("three workers in the pool",
           lambda: sum(m["in_pool"] for m in _pool(cli, grid)["members"]) == 3)
    print(f"scale 1 -> 3 until all are in the pool: {time.monotonic() - started:.1f} s")
    outputs = _outputs(pool_sandbox, "pool-grid")
    worker = next(iter(outputs["worker_server_ids"].values()))
    ad = "MyType = \"Machine\"\nName = \"intruder@nowhere\"\nMachine = \"nowhere\"\n"
    refused = _hosts(pool_sandbox).run(worker, [
        "env", "_CONDOR_SEC_TOKEN_DIRECTORY=/nonexistent", "_CONDOR_SEC_PASSWORD_FILE=/none",
        "_CONDOR_SEC_PASSWORD_DIRECTORY=/nonexistent", "condor_advertise", "UPDATE_STARTD_AD",
        "-",
    ], input_text=ad)
    assert refused.returncode != 0 or "Failed" in refused.stderr + refused.stdout
    listed = _on_master(pool_sandbox, "pool-grid", "condor_status", "-af", "Name")
    assert "intruder" not in listed


def _grep_tree(directory: Path, needle: str) -> list[str]:
    done = subprocess.run(["grep", "-rlsaF", "--", needle, str(directory)],
                          capture_output=True, text=True, check=False)
    return done.stdout.splitlines()


def test_the_signing_key_is_only_on_the_master(
    pool_sandbox: Sandbox, cli: Any, grid: Path, tmp_path: Path
) -> None:
    secret = str(pool_sandbox.heat.resources.get(
        "pool-grid", "pool_secret", with_attr=["value"]).attributes["value"])
    assert len(secret) == 48
    code, out, err = cli("render", str(grid), "-o", str(tmp_path / "rendered"))
    assert code == 0, err
    assert _grep_tree(tmp_path / "rendered", secret) == []
    outputs = _outputs(pool_sandbox, "pool-grid")
    hosts = _hosts(pool_sandbox)
    workers = list(outputs["worker_server_ids"].values())
    assert len(workers) == 3 and set(hosts.server_ids()) == {outputs["master_id"], *workers}
    # Every file each host wrote (its overlay's upper layer; the lower one is the shared base).
    holders = {server for server in hosts.server_ids()
               if _grep_tree(hosts.directory / server / "upper", secret)}
    assert holders == {outputs["master_id"]}
    for worker in workers:
        # As the worker itself sees its filesystem, and no key in its password directory.
        seen = hosts.run(worker, ["sh", "-c", 'grep -rlsaF -- "$1" /etc /var /root /home /tmp '
                                  '/run; ls -A /etc/condor/passwords.d', "-", secret])
        assert seen.stdout == "", seen.stdout
        listed = hosts.run(worker, ["condor_token_list"]).stdout
        assert '"sub":"heatgen-worker@' in listed
        assert "/etc/condor/tokens.d/heatgen-worker" in listed
        assert "ADVERTISE_STARTD" in listed and "ADMINISTRATOR" not in listed


def test_a_workers_token_lets_it_advertise_its_startd_and_nothing_more(
    pool_sandbox: Sandbox, cli: Any, grid: Path
) -> None:
    """From a worker host, as root, with the token the master issued it: the commands a job
    that took the host over would try, against the real daemons."""
    outputs = _outputs(pool_sandbox, "pool-grid")
    master_ip = outputs["master_private_ip"]
    hosts = _hosts(pool_sandbox)
    mine, other = list(outputs["worker_server_ids"].values())[:2]
    slot_of = {m["server_id"]: m["slots"][0]["name"] for m in _pool(cli, grid)["members"]}

    def on_worker(script: str, input_text: str | None = None) -> str:
        done = hosts.run(mine, ["sh", "-c", script], input_text=input_text, timeout=90)
        return done.stdout + done.stderr + f"\nrc={done.returncode}"

    pool = f"-pool {master_ip}"
    # The central manager's condor_master and schedd, by their addresses in the collector.
    masters = on_worker(f"condor_status {pool} -master -af:, Machine MyAddress").splitlines()
    master_host = hosts.state(outputs["master_id"]).name
    [master] = [line.split(", ", 1)[1] for line in masters if line.startswith(master_host + ",")]
    schedd = on_worker(f"condor_status {pool} -schedd -af MyAddress").splitlines()[0]
    for kind, command in (("Scheduler", "UPDATE_SCHEDD_AD"), ("Negotiator", "UPDATE_NEGOTIATOR_AD"),
                          ("Collector", "UPDATE_COLLECTOR_AD")):
        ad = (f'MyType = "{kind}"\nName = "forged-{kind}"\nMachine = "forged"\n'
              f'MyAddress = "<{master_ip}:9618>"\n')
        said = on_worker("condor_advertise " + command + " -", input_text=ad)
        assert "Sent 0 of 1" in said and "rc=0" not in said, (command, said)
    for command in (f'condor_off -master -addr "{master}"', f'condor_restart -addr "{master}"',
                    "cd /tmp && printf 'executable = /bin/true\\nqueue\\n' >j.sub && "
                    f'condor_submit -addr "{schedd}" j.sub'):
        said = on_worker(command)
        assert "DENIED" in said and "heatgen-worker@" in said, (command, said)
    said = on_worker(f"condor_drain {pool} {slot_of[other]}")
    assert "Failed to start DRAIN_JOBS" in said and "rc=0" not in said, said
    # READ is allowed: a worker may list the queue, as any user of the access point may.
    assert "Total for all users" in on_worker(f'condor_q -addr "{schedd}" -all')
    # A token signed with another key, even one naming the master's own identity, is refused.
    forged = on_worker(
        "set -e; d=$(mktemp -d); head -c 64 /dev/urandom >$d/POOL; chmod 600 $d/POOL; "
        "mkdir -m 700 $d/tokens; "
        f"_CONDOR_SEC_TOKEN_POOL_SIGNING_KEY_FILE=$d/POOL condor_token_create "
        f"-identity condor@{master_ip} >$d/tokens/forged; "
        "printf 'MyType = \"Machine\"\\nName = \"forged@nowhere\"\\nMachine = \"nowhere\"\\n' | "
        "_CONDOR_SEC_TOKEN_SYSTEM_DIRECTORY=$d/tokens _CONDOR_SEC_TOKEN_DIRECTORY=$d/tokens "
        "condor_advertise UPDATE_STARTD_AD - || true; rm -rf $d")
    assert "Sent 0 of 1" in forged, forged
    listed = _on_master(pool_sandbox, "pool-grid", "condor_status", "-any", "-af", "Name")
    assert "forged" not in listed
    # The real token never shows in what heatgen prints, --debug logs included.
    token = hosts.run(mine, ["cat", "/etc/condor/tokens.d/heatgen-worker"]).stdout.strip()
    assert token.count(".") == 2
    shown = [cli(*args) for args in (("status", str(grid), "--format", "json"),
                                      ("outputs", str(grid), "--format", "json"),
                                      ("events", str(grid)), ("--debug", "status", str(grid)),
                                      ("pool", str(grid)))]
    assert all(code == 0 for code, _, _ in shown), shown
    assert not any(token in out + err or token.rsplit(".", 1)[1] in out + err
                   for _, out, err in shown)
    # The pool goes on: the master still answers, and the other worker is not draining.
    draining = _on_master(pool_sandbox, "pool-grid", "condor_status", "-af", "Name", "Draining")
    assert slot_of[other] in draining and "true" not in draining.lower(), draining


def _reader_token(sandbox: Sandbox, directory: Path) -> Path:
    """A READ token for heatgen's readers, made on the master, in a file of mode 0600."""
    master_ip = _outputs(sandbox, "pool-grid")["master_private_ip"]
    token = _on_master(sandbox, "pool-grid", "condor_token_create", "-identity",
                       f"heatgen-reader@{master_ip}", "-authz", "READ")
    token_file = directory / "reader.token"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    return token_file


def test_the_bindings_read_the_pool_from_the_machine_running_the_sandbox(
    pool_sandbox: Sandbox, cli: Any, grid: Path, tmp_path: Path
) -> None:
    pytest.importorskip("htcondor2", reason="needs the htcondor bindings (test extra)")
    # Anonymous reads from the bridge are refused: every read is authenticated.
    code, out, err = cli("pool", str(grid), "--pool", "bindings", "--format", "json")
    assert code != 0 and "authenticate every read" in err and "-authz READ" in err, err
    token_file = _reader_token(pool_sandbox, tmp_path)
    token = token_file.read_text()
    code, out, err = cli("pool", str(grid), "--pool", "bindings", "--pool-token",
                         str(token_file), "--format", "json")
    assert code == 0, err
    assert token.strip() not in out + err
    over_bindings = json.loads(out)
    over_ssh = _pool(cli, grid)
    assert [(m["server_id"], m["in_pool"]) for m in over_bindings["members"]] == [
        (m["server_id"], m["in_pool"]) for m in over_ssh["members"]]
    assert all(m["in_pool"] for m in over_bindings["members"])


def test_busy_workers_survive_scale_in_and_drain_lets_their_jobs_finish(
    pool_sandbox: Sandbox, cli: Any, grid: Path
) -> None:
    _busy_rounds(pool_sandbox, cli, grid, ROUNDS)


@pytest.mark.slow
def test_busy_workers_survive_twenty_randomized_rounds(
    pool_sandbox: Sandbox, cli: Any, grid: Path
) -> None:
    _busy_rounds(pool_sandbox, cli, grid, 20)


def _busy_rounds(pool_sandbox: Sandbox, cli: Any, grid: Path, rounds: int) -> None:
    """Three workers, two of them busy with a job each (random lengths): a scale-in to one
    removes only the idle one (exit 6) and the jobs run on; --drain then lets them finish
    and removes a drained worker; no job ever restarts."""
    rng = random.Random(os.environ.get("HEATGEN_POOL_SEED", "pool"))
    _on_master(pool_sandbox, "pool-grid", "sh", "-c",
               "id alice >/dev/null 2>&1 || useradd -m alice")
    for round_number in range(rounds):
        assert cli("scale", str(grid), "--workers", "3")[0] == 0
        _until("three workers in the pool",
               lambda: sum(m["in_pool"] for m in _pool(cli, grid)["members"]) == 3)
        members = _pool(cli, grid)["members"]
        cpus = max(slot["cpus"] or 1 for m in members for slot in m["slots"]
                   if slot["kind"] == "partitionable")
        seconds = rng.randint(40, 60)
        # Each job takes a whole worker, so that two jobs make two workers busy.
        submit = (f"executable = /bin/sleep\narguments = {seconds}\nrequest_cpus = {cpus}\n"
                  "request_memory = 32\nrequest_disk = 1024\ntransfer_executable = false\n"
                  "should_transfer_files = YES\nwhen_to_transfer_output = ON_EXIT\n"
                  "log = /home/alice/jobs.log\nqueue 2\n")
        _on_master(pool_sandbox, "pool-grid", "su", "-s", "/bin/sh", "alice", "-c",
                   "cd /home/alice && cat > job.sub && condor_submit job.sub",
                   input_text=submit)
        _until("both jobs started on two workers", lambda: len({
            j.get("RemoteHost") for j in _jobs(pool_sandbox, "pool-grid")
            if j.get("JobStatus") == 2 and j.get("JobCurrentStartDate")}) == 2, 120,
            lambda: _on_master(pool_sandbox, "pool-grid", "sh", "-c",
                               "condor_q -allusers -better-analyze; condor_status"))
        # The schedd counts a start in NumJobStarts only when the job ends (or its shadow
        # updates the queue): while they run, an unchanged start date says "never restarted".
        started = {(j["ClusterId"], j["ProcId"]): j["JobCurrentStartDate"]
                   for j in _jobs(pool_sandbox, "pool-grid") if j.get("JobStatus") == 2}

        code, out, err = cli("scale", str(grid), "--workers", "1")
        assert code == 6, err
        assert "1 more would have had to go, but 1 is busy" in err
        assert sum(m["in_pool"] for m in _pool(cli, grid)["members"]) == 2
        running = {(j["ClusterId"], j["ProcId"]): j["JobCurrentStartDate"]
                   for j in _jobs(pool_sandbox, "pool-grid") if j.get("JobStatus") == 2}
        assert running == started, (running, started)

        code, out, err = cli("scale", str(grid), "--workers", "1", "--drain")
        assert code == 0, err
        assert "draining" in err
        _until("both jobs done", lambda: all(
            j.get("JobStatus") == 4 for j in _jobs(pool_sandbox, "pool-grid")), 180)
        finished = [j for j in _jobs(pool_sandbox, "pool-grid")
                    if (j["ClusterId"], j["ProcId"]) in started]
        assert len(finished) == 2 and all(j["NumJobStarts"] == 1 for j in finished), finished
        events = _on_master(pool_sandbox, "pool-grid", "cat", "/home/alice/jobs.log")
        assert events.count("Job executing on host") == 2 * (round_number + 1), events
        assert "Job was evicted" not in events and "Job was aborted" not in events
        assert sum(m["in_pool"] for m in _pool(cli, grid)["members"]) == 1
        _on_master(pool_sandbox, "pool-grid", "sh", "-c", "condor_rm -all >/dev/null 2>&1; "
                   "rm -f /var/lib/condor/spool/history*; true")
        print(f"round {round_number + 1}: busy workers kept, drained after {seconds} s jobs")


def test_a_payload_that_fails_fails_the_stack_at_once_with_its_reason(
    pool_sandbox: Sandbox, cli: Any, tmp_path: Path
) -> None:
    site = _site(tmp_path, "broken-grid", **{
        FAST_NEGOTIATOR: '  extra_config: ["use feature:NoSuchFeatureAtAll"]\n'})
    started = time.monotonic()
    try:
        code, out, err = cli("deploy", str(site))
        assert code == 4, err
        elapsed = time.monotonic() - started
        assert elapsed < 120, elapsed  # not the wait condition's 1800 s
        assert "WaitConditionFailure" in err and "master:" in err
        assert "Configuration Error" in err and "90-heatgen-extra.conf" in err, err
        print(f"payload failure reported after {elapsed:.1f} s")
    finally:
        cli("delete", str(site), "--yes")


def test_sandbox_ssh_runs_on_a_host_and_a_killed_host_shows_as_crashed(
    pool_sandbox: Sandbox, grid: Path, capfd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from heatgen.sandbox import control

    monkeypatch.setenv("HEATGEN_SANDBOX_DIR", str(pool_sandbox.config.state_dir))
    capfd.readouterr()
    assert main(["sandbox", "ssh", "master", "--", "condor_status", "-af", "MyType"]) == 0
    assert "Machine" in capfd.readouterr().out  # the worker's slot, asked on the master
    outputs = _outputs(pool_sandbox, "pool-grid")
    worker = next(iter(outputs["worker_server_ids"].values()))
    state = _hosts(pool_sandbox).state(worker)
    assert state is not None and state.pid is not None and state.alive
    os.killpg(state.pid, signal.SIGKILL)  # the host dies under the sandbox (a VM crashing)
    _until("the host seen as dead", lambda: not _hosts(pool_sandbox).alive(worker), 20)
    shown = [h for h in control.status(pool_sandbox.config).hosts if h.server_id == worker]
    assert shown and not shown[0].alive
    assert main(["sandbox", "status"]) == 0
    assert "crashed" in capfd.readouterr().out


def test_the_bindings_read_the_job_queue_as_ssh_does(
    pool_sandbox: Sandbox, cli: Any, grid: Path, tmp_path: Path
) -> None:
    """The job queue as `heatgen autoscale` reads it. Last in the module: the jobs it leaves
    in the schedd's history would count in the busy rounds' job checks."""
    pytest.importorskip("htcondor2", reason="needs the htcondor bindings (test extra)")
    from heatgen.pool.bindings import BindingsPool
    from heatgen.pool.ssh import SshPool
    from heatgen.sandbox import hooks

    token_file = _reader_token(pool_sandbox, tmp_path)
    _on_master(pool_sandbox, "pool-grid", "sh", "-c", "id erin >/dev/null 2>&1 || useradd -m erin")
    never = ("executable = /bin/true\nrequirements = false\nrequest_cpus = 1\n"
             "transfer_executable = false\nqueue 2\n")
    _on_master(pool_sandbox, "pool-grid", "su", "-s", "/bin/sh", "erin", "-c",
               "cd /home/erin && cat > never.sub && condor_submit never.sub", input_text=never)
    host = _outputs(pool_sandbox, "pool-grid")["master_floating_ip"]
    try:
        queued = BindingsPool(host, token_file=token_file).queue()
        over = SshPool(host, identity_file=hooks.ssh_identity("grid-key"),
                       known_hosts=hooks.known_hosts()).queue()
        assert sorted(j.id for j in queued.jobs) == sorted(j.id for j in over.jobs)
        assert len(queued.jobs) == 2 and all(j.owner == "erin" for j in queued.jobs)
        assert "false" in queued.jobs[0].ad["Requirements"].text
        # the collector's start, from its own ad, both ways (it vouches for missing members)
        assert queued.collector_since is not None and over.collector_since is not None
        assert abs(queued.collector_since - over.collector_since) <= 1
        assert queued.collector_since < time.time()
    finally:
        _on_master(pool_sandbox, "pool-grid", "sh", "-c", "condor_rm erin >/dev/null 2>&1; true")
