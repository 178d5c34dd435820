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
    """An OpenStack API, auth or connection failure.

    ``transient`` marks failures worth retrying (HTTP 500/502/503/504, a lost connection):
    the request may work a moment later, and a write may even have landed.
    """

    exit_status = ExitStatus.CLOUD
    transient: bool = False


class ServiceMissing(CloudError):
    """The cloud's catalog has no endpoint of a service heatgen needs for this command."""

    def __init__(self, service_type: str, project: str) -> None:
        self.service_type = service_type
        super().__init__(f"this cloud's catalog has no {service_type} service ({project})")


class StackBusy(CloudError):
    """The stack is in the middle of another operation."""


class NotDeployed(HeatgenError):
    """The site has no stack in this cloud."""


class SandboxError(CloudError):
    """The local sandbox cannot start, stop or answer."""


class StackFailed(HeatgenError):
    """A stack operation ended in a FAILED state."""

    exit_status = ExitStatus.STACK_FAILED


class WaitTimeout(HeatgenError):
    """A wait reached its deadline before a final state."""

    exit_status = ExitStatus.TIMEOUT


class StackStalled(WaitTimeout):
    """A wait saw no progress for too long: the operation's engine is likely gone."""
