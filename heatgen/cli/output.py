"""How the CLI prints: progress and notes as they happen (stderr), results on stdout.

On a terminal a wait shows one progress line (resources done out of those seen, elapsed time,
the latest event) and keeps failures and notes on lines of their own; when stderr is not a
terminal, or with ``--verbose``, every event gets a line, as Heat reports it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from heatgen.cloud.interface import Event


def event_line(event: Event) -> str:
    stamp = event.time.replace("T", " ").removesuffix("Z")
    where = f"{event.stack}/" if event.stack else ""
    reason = f"  {event.reason}" if event.reason else ""
    return f"  {stamp}  {where}{event.resource:<24} {event.status}{reason}"


class ConsoleReporter:
    """The CLI's :class:`~heatgen.ops.report.Reporter`: events and notes to ``stream``."""

    def __init__(self, stream: TextIO | None = None, progress: bool | None = None) -> None:
        self.stream: TextIO = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.progress = bool(isatty and isatty()) if progress is None else progress
        self.started = time.monotonic()
        self.states: dict[tuple[str, str], str] = {}
        self.open_line = False

    def event(self, event: Event) -> None:
        if not self.progress:
            print(event_line(event), file=self.stream, flush=True)
            return
        if event.resource != event.stack:  # the stack's own events are not resources
            self.states[(event.stack, event.resource)] = event.status
        if event.status.endswith("_FAILED"):
            self._print(event_line(event))
            return
        done = sum(1 for status in self.states.values() if status.endswith("_COMPLETE"))
        where = f"{event.stack}/" if event.stack else ""
        text = (f"  {done}/{len(self.states)} resources done, "
                f"{time.monotonic() - self.started:.0f} s; latest: {where}{event.resource} "
                f"{event.status}")
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r\033[K" + text[:width])
        self.stream.flush()
        self.open_line = True

    def note(self, message: str) -> None:
        self._print(f"heatgen: {message}")

    def _print(self, line: str) -> None:
        if self.open_line:
            self.stream.write("\r\033[K")
            self.open_line = False
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """End the progress line (the next output starts on a line of its own)."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


def print_plan(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


def print_outputs(outputs: Mapping[str, Any]) -> None:
    for key, value in outputs.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"{key}: {shown}")


def master_line(outputs: Mapping[str, Any], sandbox: bool) -> str:
    from heatgen.contract import GridOutputs

    read = GridOutputs.of(outputs)
    if read.master_floating_ip is None and read.master_private_ip is None:
        return "none (sandbox: no network)" if sandbox else "no address yet"
    return f"floating {read.master_floating_ip or '-'}, private {read.master_private_ip or '-'}"


def member_counts(statuses: Sequence[str]) -> str:
    """``3 (CREATE_COMPLETE 2, CREATE_FAILED 1)``."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    shown = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    return f"{len(statuses)}" + (f" ({shown})" if shown else "")


def print_summary(outputs: Mapping[str, Any], statuses: Sequence[str], sandbox: bool,
                  site_label: str) -> None:
    """What a user needs after a deploy: the master, the group, the URLs, the next commands.
    Every output: ``heatgen outputs``; every member: ``heatgen status --members``."""
    print(f"master:   {master_line(outputs, sandbox)}")
    ready = outputs.get("wait_condition_data")
    if ready not in (None, "", {}):
        print(f"ready:    {json.dumps(ready) if isinstance(ready, dict | list) else ready}")
    print(f"workers:  {member_counts(statuses)}")
    for base in ("scale_up_url", "scale_down_url"):  # each group's (suffixed in a grid of several)
        for key in outputs:
            if (key == base or key.startswith(f"{base}_")) and outputs[key]:
                print(f"{key}: {outputs[key]}")
    print(f"next:     heatgen status {site_label} | heatgen scale {site_label} --workers N | "
          f"heatgen outputs {site_label}")
