"""How the CLI prints: events and notes as they happen (stderr), plans and outputs (stdout)."""

from __future__ import annotations

import json
import sys
from typing import Any

from heatgen.cloud.interface import Event


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


def print_plan(lines: list[str]) -> None:
    for line in lines:
        print(line)


def print_outputs(outputs: dict[str, Any]) -> None:
    for key, value in outputs.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"{key}: {shown}")
