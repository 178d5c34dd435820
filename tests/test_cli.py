"""The command line over the in-memory fake cloud: every command's help, exit codes, text and
JSON output. (The same commands against a real Heat: tests/integration.)"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from heatgen.cli import _build_parser, common, main
from heatgen.cloud.connect import Target
from heatgen.cloud.interface import Alarm, Resource
from heatgen.errors import CloudError, ExitStatus
from heatgen.ops import report as report_module
from heatgen.ops import wait as wait_module

from .conftest import EXAMPLES
from .fakecloud import FakeCloud
from .test_pool import SERVER_IDS

THESIS = str(EXAMPLES / "thesis.yaml")
CONDOR = Path(__file__).resolve().parent / "data" / "condor"
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def run(cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Iterator[Run]:
    """`heatgen ARGS` against the fake cloud; (exit code, stdout, stderr)."""
    sandbox = {"on": False}
    monkeypatch.setattr(common, "open_target",
                        lambda site, os_cloud: Target(cloud, "fake", sandbox["on"]))
    monkeypatch.setattr(wait_module, "POLL_INTERVAL", 0.001)
    # `events --follow` reads it when it starts
    monkeypatch.setattr(report_module, "POLL_INTERVAL", 0.001)

    def invoke(*args: str, in_sandbox: bool = False) -> tuple[int, str, str]:
        sandbox["on"] = in_sandbox
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield invoke


def _grid(cloud: FakeCloud, members: int = 5) -> Any:
    stack = cloud.add_stack("bergen-grid", worker_min="1", worker_max="7",
                            worker_desired=str(members), site_worker_desired="1")
    names = [f"member-{i}" for i in range(1, members + 1)]
    stack.resources = [
        Resource(name, "HeatGen::Grid::Worker", "CREATE_COMPLETE", "", f"nested-{name}",
                 "group-stack", parent="workers", created=f"2026-01-01T00:00:0{index}Z")
        for index, name in enumerate(names, start=1)
    ]
    stack.outputs = {
        "worker_count": members,
        "worker_server_ids": {name: SERVER_IDS[i] for i, name in enumerate(names, start=1)},
        "worker_private_ips": {name: f"10.0.0.{10 + i}" for i, name in enumerate(names, 1)},
        "master_floating_ip": "203.0.113.10", "master_private_ip": "10.0.0.5",
        "scale_up_url": "http://heat:8004/v1/p/stacks/g/i/resources/up/signal",
        "scale_up_alarm_url": "http://heat:8000/v1/signal/x?Signature=s3cret&AWSAccessKeyId=k",
    }
    return stack


# --- help ----------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _subparsers(child, (*prefix, name))


def test_a_command_line_builds_only_its_commands_module_and_the_same_parser() -> None:
    from heatgen.cli import COMMANDS, _command

    full = dict(_subparsers(_build_parser()))
    assert {words[0] for words in full if words} == set(COMMANDS)
    for command in COMMANDS:
        assert _command([command, "x.yaml"]) == command
        assert _command(["--debug", command]) == command
        alone = dict(_subparsers(_build_parser(command)))
        mine = {words: parser for words, parser in full.items() if words[:1] == (command,)}
        assert {w: p.format_help() for w, p in alone.items() if w[:1] == (command,)} == {
            w: p.format_help() for w, p in mine.items()}, command
    assert _command(["--help"]) is None and _command(["nonsense", "render"]) is None
    assert _command([]) is None


def test_every_command_and_option_has_help_and_help_exits_0(capsys: Any) -> None:
    commands = list(_subparsers(_build_parser()))
    assert len(commands) >= 16
    for words, parser in commands:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"`heatgen {' '.join(words)} {choice.dest}` has no help"
            elif action.dest != "help":
                named = action.option_strings or action.dest
                assert action.help, f"heatgen {' '.join(words)}: {named} has no help"
        with pytest.raises(SystemExit) as exited:
            main([*words, "--help"])
        assert exited.value.code == 0, words
        assert "usage: heatgen" in capsys.readouterr().out
    for flag in ("-h", "--help"):
        with pytest.raises(SystemExit) as exited:
            main([flag])
        assert exited.value.code == 0


# --- deploy --------------------------------------------------------------------------------


def test_deploy_creates_and_prints_a_summary_not_every_output(run: Run, cloud: FakeCloud) -> None:
    code, out, err = run("deploy", THESIS)
    assert code == 0, err
    assert re.search(r"^stack bergen-grid CREATE_COMPLETE in \d+\.\d s$", out, re.M)
    assert "master:   no address yet" in out
    assert f"next:     heatgen status {THESIS} | heatgen scale {THESIS} --workers N | " \
           f"heatgen outputs {THESIS}" in out
    assert "worker_server_ids" not in out
    assert "heatgen: creating stack bergen-grid" in err
    # No group size among the outputs: the summary counts the members as listed (none here).
    assert "workers:  0\n" in out
    assert ("resources", 1) in cloud.calls


def test_deploy_summary_counts_a_created_grid_from_its_outputs(
        run: Run, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """A completed create has every member CREATE_COMPLETE: the size output says how many,
    and the members are not listed."""
    create = cloud.create_stack

    def create_sized(fields: Any) -> str:
        stack_id = create(fields)
        cloud.stacks[stack_id].outputs = {"worker_count": 4}
        return stack_id

    monkeypatch.setattr(cloud, "create_stack", create_sized)
    code, out, err = run("deploy", THESIS)
    assert code == 0, err
    assert "workers:  4 (CREATE_COMPLETE 4)\n" in out
    assert not [call for call in cloud.calls if call[0] == "resources"]


def test_deploy_summary_lists_the_members_after_an_update(run: Run, cloud: FakeCloud) -> None:
    """After an update members may be in different states: they are listed."""
    stack = _grid(cloud, members=3)
    stack.resources[0] = dataclasses.replace(stack.resources[0], status="UPDATE_COMPLETE")
    code, out, err = run("deploy", THESIS, "--yes")
    assert code == 0, err
    assert "UPDATE_COMPLETE in" in out
    assert "workers:  3 (CREATE_COMPLETE 2, UPDATE_COMPLETE 1)\n" in out
    assert ("resources", 1) in cloud.calls


def test_deploy_in_the_sandbox_names_the_missing_network(run: Run, cloud: FakeCloud) -> None:
    code, out, err = run("deploy", THESIS, "--sandbox-no-master-signal", in_sandbox=True)
    assert code == 0, err
    assert "master:   none (sandbox: no network)" in out


def test_deploy_exit_codes(run: Run, cloud: FakeCloud, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: x\n")
    code, out, err = run("deploy", str(bad))
    assert code == ExitStatus.USAGE and "keypair: required field is missing" in err
    cloud.fail("get_stack", CloudError("read the stack: HTTP 403: forbidden"))
    assert run("deploy", THESIS)[0] == ExitStatus.CLOUD
    cloud.final = "FAILED"
    cloud.final_reason = "Resource CREATE failed: boom"
    code, out, err = run("deploy", THESIS)
    assert code == ExitStatus.STACK_FAILED
    assert "heatgen: error: stack bergen-grid is CREATE_FAILED: Resource CREATE failed" in err
    assert "Traceback" not in err


def test_deploy_dry_run_check_exits_1_with_changes(run: Run, cloud: FakeCloud) -> None:
    stack = cloud.add_stack("bergen-grid", site_worker_desired="1", worker_desired="1")
    stack.outputs = {"worker_count": 1}
    code, out, err = run("deploy", THESIS, "--dry-run", "--check")
    assert code == ExitStatus.PLAN_HAS_CHANGES, err
    assert out.startswith("plan for stack bergen-grid:\n    added: -\n  updated: ")
    assert "  workers: 1 now, 1 after the update" in out
    assert "update_stack" not in cloud.names()
    assert run("deploy", THESIS, "--check")[0] == ExitStatus.USAGE


def test_a_stalled_deploy_exits_5_naming_resume(run: Run, cloud: FakeCloud) -> None:
    cloud.polls = 10_000_000
    code, out, err = run("deploy", THESIS, "--stall-timeout", "0.05")
    assert code == ExitStatus.TIMEOUT
    assert f"run `heatgen deploy {THESIS} --resume`" in err


def test_interrupted_deploy_says_the_command_that_attaches(run: Run, cloud: FakeCloud,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    def interrupt(fields: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(cloud, "create_stack", interrupt)
    code, out, err = run("deploy", THESIS, "--timeout", "60")
    assert code == ExitStatus.INTERRUPTED
    assert f"Run `heatgen deploy {THESIS} --timeout 60` again to attach to it" in err


def test_no_wait_deploy_and_scale_report_the_change_as_accepted(run: Run, cloud: FakeCloud
                                                                ) -> None:
    code, out, err = run("deploy", THESIS, "--no-wait")
    assert code == 0, err
    assert "Heat accepted the change (CREATE_IN_PROGRESS); follow it with " \
           f"`heatgen events {THESIS} --follow`" in out
    cloud.stacks.clear()
    _grid(cloud, members=1)
    code, out, err = run("scale", THESIS, "--workers", "3", "--no-wait")
    assert code == 0, err
    assert "Heat accepted the resize to 3 workers" in out
    assert "CREATE_COMPLETE" not in out


# --- scale ---------------------------------------------------------------------------------


def test_scale_in_keeps_busy_workers_exits_6_and_prints_the_plan_once(
    run: Run, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grid(cloud)
    monkeypatch.setenv("HEATGEN_POOL_RECORDING", str(CONDOR / "busy-two-of-five.json"))
    code, out, err = run("scale", THESIS, "--workers", "1", in_sandbox=True)
    assert code == ExitStatus.BUSY_WORKERS_KEPT, err
    assert out.count("keep   member-2") == 1 and "keep   member-2" not in err
    assert "asked for 1 workers, the group keeps 2: 1 more would have had to go, but 1 is " \
           "busy (use --drain" in err
    marked = [args for name, args in cloud.calls if name == "mark_unhealthy"]
    assert sorted(name for name, unhealthy, _ in marked if unhealthy) == [
        "member-1", "member-3", "member-5"]


def test_scale_in_against_a_pool_that_lists_no_member_calls_them_unknown(
    run: Run, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grid(cloud, members=2)
    monkeypatch.setenv("HEATGEN_POOL_RECORDING", str(CONDOR / "no-machines.json"))
    code, out, err = run("scale", THESIS, "--workers", "1", in_sandbox=True)
    assert code == ExitStatus.BUSY_WORKERS_KEPT
    assert "is busy" not in err and "are busy" not in err
    assert "1 is not in the pool (never joined, or not reachable) while the pool lists none " \
           "of this group's workers" in err
    assert out.count("keep   member-1") == 1
    assert "update_stack" not in cloud.names()


def test_pool_recordings_are_refused_outside_the_sandbox(
    run: Run, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grid(cloud)
    monkeypatch.setenv("HEATGEN_POOL_RECORDING", str(CONDOR / "idle-five.json"))
    code, out, err = run("scale", THESIS, "--workers", "1")
    assert code == ExitStatus.USAGE
    assert "HEATGEN_POOL_RECORDING is set, but cloud fake is not the heatgen sandbox" in err
    assert "mark_unhealthy" not in cloud.names()


def test_scale_reports_the_deployed_bound(run: Run, cloud: FakeCloud) -> None:
    stack = _grid(cloud, members=3)
    stack.parameters["worker_max"] = "3"
    code, out, err = run("scale", THESIS, "--workers", "4")
    assert code == ExitStatus.USAGE
    assert err == ("heatgen: error: --workers 4 is above the maximum 3 (the stack's "
                   f"worker_max); raise it with `heatgen scale {THESIS} --workers 4 --max 4` "
                   "(or raise workers.max and deploy)\n")


def test_interrupted_scale_says_the_full_command(run: Run, cloud: FakeCloud,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _grid(cloud, members=1)

    def interrupt(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cloud, "update_stack", interrupt)
    code, out, err = run("scale", THESIS, "--workers", "6")
    assert code == ExitStatus.INTERRUPTED
    assert f"Run `heatgen scale {THESIS} --workers 6` again to attach to it" in err


BAD_NUMBERS = [
    (("deploy", THESIS, "--timeout"), "-5", "a number of seconds > 0"),
    (("deploy", THESIS, "--timeout"), "0", "a number of seconds > 0"),
    (("deploy", THESIS, "--timeout"), "nan", "a number of seconds > 0"),
    (("deploy", THESIS, "--stall-timeout"), "nan", "a number of seconds >= 0"),
    (("deploy", THESIS, "--stall-timeout"), "-1", "a number of seconds >= 0"),
    (("scale", THESIS, "--workers", "3", "--timeout"), "inf", "a number of seconds > 0"),
    (("scale", THESIS, "--workers", "3", "--drain", "--drain-timeout"), "nan",
     "a number of seconds >= 0"),
    (("delete", THESIS, "--yes", "--timeout"), "-1", "a number of seconds > 0"),
    (("autoscale", THESIS, "--interval"), "nan", "a number of seconds > 0"),
    (("autoscale", THESIS, "--timeout"), "x", "a number of seconds > 0"),
    (("sandbox", "up", "--heat-port"), "70000", "a TCP port from 1 to 65535"),
    (("sandbox", "up", "--keystone-port"), "0", "a TCP port from 1 to 65535"),
    (("sandbox", "up", "--timeout"), "-3", "a number of seconds > 0"),
    (("sandbox", "load", THESIS, "--cpu"), "150", "a percentage from 0 to 100"),
    (("sandbox", "load", THESIS, "--cpu", "50", "--duration"), "0", "a number of seconds > 0"),
]


@pytest.mark.parametrize(("command", "value", "expected"), BAD_NUMBERS,
                         ids=[f"{' '.join(c[0][:1] + c[0][-1:])} {c[1]}" for c in BAD_NUMBERS])
def test_a_bad_number_is_refused_before_anything_is_sent(
        run: Run, cloud: FakeCloud, capsys: Any,
        command: tuple[str, ...], value: str, expected: str) -> None:
    """A negative, zero, infinite or not-a-number time budget (and a port or percentage out of
    range) is a usage error naming the option; no request reaches the cloud. A --timeout of -5
    used to create the stack and then report it "still CREATE_IN_PROGRESS after -5 s"."""
    _grid(cloud, members=2)
    before = list(cloud.calls)
    with pytest.raises(SystemExit) as exited:
        run(*command, value)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {command[-1]}: must be {expected} (got {value!r})" in err
    assert "Traceback" not in err
    assert cloud.calls == before


def test_good_numbers_pass_as_they_are() -> None:
    assert common.positive_seconds("1.5") == 1.5 and common.seconds("0") == 0.0
    assert common.port("65535") == 65535 and common.percent("0") == 0.0
    assert common.percent("100") == 100.0


# --- status, outputs, events, alarms, delete -----------------------------------------------


def test_status_text_summarises_and_json_keeps_everything(run: Run, cloud: FakeCloud) -> None:
    _grid(cloud)
    code, out, err = run("status", THESIS)
    assert code == 0, err
    assert "workers:  5 (CREATE_COMPLETE 5)" in out
    assert "member-3" not in out
    assert "master:   floating 203.0.113.10, private 10.0.0.5" in out
    assert f"`heatgen status {THESIS} --members`" in out
    code, out, err = run("status", THESIS, "--members")
    assert "  member-3         CREATE_COMPLETE    server 456b98b6" in out
    code, out, err = run("status", THESIS, "--format", "json")
    data = json.loads(out)
    assert data["workers"]["count"] == 5 and len(data["workers"]["members"]) == 5
    assert data["outputs"]["worker_server_ids"]["member-1"] == SERVER_IDS[1]
    assert "s3cret" not in out


def test_status_says_why_alarms_are_unavailable(run: Run, cloud: FakeCloud,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from heatgen.errors import ServiceMissing

    _grid(cloud, members=1)

    def no_aodh(stack_id: str) -> list[Alarm]:
        raise ServiceMissing("alarming", "Aodh")

    monkeypatch.setattr(cloud, "alarms", no_aodh)
    code, out, err = run("status", THESIS, in_sandbox=True)
    assert code == 0
    assert "alarms:   unavailable: this cloud's catalog has no alarming service (Aodh); " \
           "sandbox: start it with `heatgen sandbox up --backend postgres --telemetry`" in out


def test_outputs_redact_secrets_unless_asked(run: Run, cloud: FakeCloud) -> None:
    _grid(cloud, members=1)
    code, out, err = run("outputs", THESIS)
    assert code == 0 and "s3cret" not in out and "Signature" not in out
    assert "scale_up_alarm_url: http://heat:8000/v1/signal/x?<redacted>" in out
    code, out, err = run("outputs", THESIS, "--format", "json", "--show-secrets")
    assert json.loads(out)["scale_up_alarm_url"].endswith("Signature=s3cret&AWSAccessKeyId=k")


def test_events_follow_ends_when_the_stack_is_deleted(run: Run, cloud: FakeCloud) -> None:
    stack = _grid(cloud, members=1)
    cloud._event(stack, "master", "CREATE_COMPLETE")
    cloud.fail("events", CloudError("transient", ), )
    cloud.failures["events"][0].transient = True  # type: ignore[attr-defined]
    cloud._begin(stack, "DELETE")
    code, out, err = run("events", THESIS, "--follow")
    assert code == 0, err
    assert "master" in out and out.rstrip().endswith("stack bergen-grid is gone (deleted)")
    assert "trying again" in err


def test_alarms_text_shows_the_query_as_json(run: Run, cloud: FakeCloud,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _grid(cloud, members=1)
    alarm = Alarm("a1", "cpu_alarm_high", "gnocchi_aggregation_by_resources_threshold", "ok",
                  "2026-01-01T00:00:00", "", {"threshold": 6e9, "granularity": 60,
                  "comparison_operator": "gt",
                  "query": '{"and": [{"=": {"server_group": "S"}}]}'}, [])
    monkeypatch.setattr(cloud, "alarms", lambda stack_id: [alarm])
    code, out, err = run("alarms", THESIS)
    assert code == 0, err
    assert '  query:     {"and": [{"=": {"server_group": "S"}}]}' in out
    code, out, err = run("alarms", THESIS, "--format", "json")
    assert json.loads(out)[0]["threshold_percent"] == 5.0


def test_delete_needs_yes_off_a_terminal(run: Run, cloud: FakeCloud) -> None:
    _grid(cloud, members=1)
    code, out, err = run("delete", THESIS)
    assert code == ExitStatus.USAGE and "needs --yes when not on a terminal" in err
    assert "delete_stack" not in cloud.names()
    code, out, err = run("delete", THESIS, "--yes")
    assert code == 0 and out == "stack bergen-grid DELETE_COMPLETE\n"
    code, out, err = run("status", THESIS)
    assert code == ExitStatus.USAGE and "does not exist in this cloud" in err


class Terminal:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_a_wait_on_a_terminal_shows_one_progress_line_and_keeps_failures() -> None:
    from heatgen.cli.output import ConsoleReporter
    from heatgen.cloud.interface import Event

    screen = Terminal()
    reporter = ConsoleReporter(screen)  # type: ignore[arg-type]
    for index, (resource, status) in enumerate([
        ("bergen-grid", "CREATE_IN_PROGRESS"), ("master", "CREATE_IN_PROGRESS"),
        ("master", "CREATE_COMPLETE"), ("workers", "CREATE_IN_PROGRESS"),
        ("member-1", "CREATE_FAILED"),
    ]):
        stack = "bergen-grid"
        reporter.event(Event(str(index), "2026-01-01T00:00:00Z", resource, status, "why", stack))
    reporter.note("something to say")
    reporter.close()
    assert "\r\033[K  1/2 resources done" in screen.text
    assert "latest: bergen-grid/workers CREATE_IN_PROGRESS" in screen.text
    assert "\r\033[K  2026-01-01 00:00:00  bergen-grid/member-1" in screen.text
    assert "CREATE_FAILED  why\nheatgen: something to say\n" in screen.text
    assert screen.text.endswith("heatgen: something to say\n")
    plain = ConsoleReporter(Terminal(), progress=False)  # type: ignore[arg-type]
    plain.event(Event("1", "2026-01-01T00:00:00Z", "master", "CREATE_COMPLETE", "", "g"))
    shown = plain.stream.text  # type: ignore[attr-defined]
    assert shown == "  2026-01-01 00:00:00  g/master                   CREATE_COMPLETE\n"


def test_scale_in_drops_the_removed_workers_ads_from_the_collector(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heatgen.config import load_site
    from heatgen.ops.report import SilentReporter
    from heatgen.ops.scale import ScaleRequest, scale
    from heatgen.sandbox.recording import RecordedPool

    monkeypatch.setattr(wait_module, "POLL_INTERVAL", 0.001)
    _grid(cloud)
    pool = RecordedPool.from_files([CONDOR / "idle-five.json"])
    result = scale(cloud, load_site(THESIS), ScaleRequest(workers=3), SilentReporter(),
                   pool_for=lambda stack: pool)
    assert result.action == "scaled"
    assert len(result.scale_in.removed if result.scale_in else ()) == 2
    [forgotten] = pool.forgotten
    assert len(forgotten) == 2 and all(name.startswith("demo-worker-") for name in forgotten)
