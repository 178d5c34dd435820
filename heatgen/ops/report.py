"""Where progress goes, and what time it is: the two things every operation is given.

The library never prints: notes and Heat's events go to a :class:`Reporter`; waits use a
:class:`Clock`, which tests replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from heatgen.cloud.interface import Event

POLL_INTERVAL = 1.0


class Reporter(Protocol):
    """Where progress goes; the library itself never prints."""

    def event(self, event: Event) -> None: ...

    def note(self, message: str) -> None: ...


class SilentReporter:
    def event(self, event: Event) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class Clock:
    """Time and sleep, replaceable in tests."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

