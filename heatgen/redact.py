"""Scrub secrets from text that heatgen may show: tokens, passwords, URL signatures.

Used on every ``--debug`` log record, so the OpenStack clients' request and response logs
can be read without leaking credentials, and on anything else echoed from a cloud.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header values: X-Auth-Token / X-Subject-Token / X-Service-Token / Authorization.
    (re.compile(r"((?:X-(?:Auth|Subject|Service)-Token|Authorization)[\"']?\s*[:=]\s*[\"']?)"
                r"(?!\{SHA256\})([^\"'\s,}]+)", re.I), rf"\g<1>{REDACTED}"),
    # JSON or Python-repr fields whose value is a secret.
    (re.compile(r"([\"'](?:password|token|secret|admin_password|pool_secret|"
                r"stack_domain_admin_password|credential)[\"']\s*:\s*[\"'])([^\"']*)([\"'])",
                re.I), rf"\g<1>{REDACTED}\g<3>"),
    # Pre-signed URLs (heat-api-cfn alarm_url, EC2-style signatures).
    (re.compile(r"((?:Signature|AWSAccessKeyId)=)[^&\"'\s]+"), rf"\g<1>{REDACTED}"),
    # Credentials inside URLs.
    (re.compile(r"(://[^/\s:@]+:)[^@/\s]+@"), rf"\g<1>{REDACTED}@"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with :func:`redact` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a client's malformed log call must not break it
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return True


def enable_debug_logging(stream: TextIO | None = None) -> logging.Handler:
    """Log every library's DEBUG records to ``stream`` (stderr), secrets redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


def redact_url(url: Any) -> Any:
    """Keep scheme, host and path of a URL; drop its query (signatures) and credentials."""
    if not isinstance(url, str) or "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))
