"""Secrets never reach logs: what the --debug filter removes."""

from __future__ import annotations

import io
import logging

from heatgen.redact import RedactingFilter, enable_debug_logging, redact


def test_tokens_passwords_and_signatures_are_removed() -> None:
    text = (
        'curl -H "X-Auth-Token: gAAAAABsecret123" -H \'X-Subject-Token: abc\' '
        '{"auth": {"password": "hunter2", "token": "t0k"}} '
        "http://h:8000/v1/signal/x?Timestamp=1&AWSAccessKeyId=AK1&Signature=SiG%3D "
        "https://user:pa55@host/path"
    )
    out = redact(text)
    for secret in ("gAAAAABsecret123", "abc", "hunter2", "t0k", "AK1", "SiG%3D", "pa55"):
        assert secret not in out
    assert "X-Auth-Token: <redacted>" in out
    assert '"password": "<redacted>"' in out
    assert "Signature=<redacted>" in out
    assert "https://user:<redacted>@host/path" in out


def test_keystoneauth_hashed_tokens_are_left_readable() -> None:
    line = '-H "X-Auth-Token: {SHA256}633b6271909d26b671f563207ecfad71"'
    assert redact(line) == line


def test_debug_handler_redacts_records_with_arguments() -> None:
    stream = io.StringIO()
    handler = enable_debug_logging(stream)
    try:
        logging.getLogger("keystoneauth.session").debug("REQ: %s", '{"password": "s3cret"}')
    finally:
        logging.getLogger().removeHandler(handler)
    assert '{"password": "<redacted>"}' in stream.getvalue()
    assert "s3cret" not in stream.getvalue()
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
