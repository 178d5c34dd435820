"""The exception tree and the exit codes the CLI documents.

Every error a user can cause or meet derives from :class:`HeatgenError`; the CLI catches the
root once and prints ``str(error)``. Messages never contain secrets.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    PLAN_HAS_CHANGES = 1
    USAGE = 2
    CLOUD = 3
    STACK_FAILED = 4
    TIMEOUT = 5
    BUSY_WORKERS_KEPT = 6
    INTERRUPTED = 130


class HeatgenError(Exception):
    """Root of every error heatgen reports to a user."""

    exit_status: ExitStatus = ExitStatus.USAGE


class ConfigError(HeatgenError):
    """The site config is unreadable or invalid; carries one line per problem."""

    exit_status = ExitStatus.USAGE

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(f"{path}: {p}" for p in self.problems))


class RenderError(HeatgenError):
    """A template could not be rendered or did not parse as HOT."""

    exit_status = ExitStatus.USAGE


class UsageError(HeatgenError):
    """A command was called with arguments that cannot work."""

    exit_status = ExitStatus.USAGE


class CloudError(HeatgenError):
    """An OpenStack API, auth or connection failure."""

    exit_status = ExitStatus.CLOUD


class SandboxError(CloudError):
    """The local sandbox cannot start, stop or answer."""


class StackFailed(HeatgenError):
    """A stack operation ended in a FAILED state."""

    exit_status = ExitStatus.STACK_FAILED


class WaitTimeout(HeatgenError):
    """A wait reached its deadline before a final state."""

    exit_status = ExitStatus.TIMEOUT
