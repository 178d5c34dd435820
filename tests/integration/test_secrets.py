"""No secret leaves heatgen: every command with --debug, against the sandbox.

heatgen reaches the sandbox through a pass-through :mod:`tests.faultproxy` proxy (no faults),
which records every token it carried. The secrets looked for: the sandbox's passwords and
keys, every token, the pool secret, the wait handle's token and the signatures of the
pre-signed alarm URLs. None may appear in stdout, stderr or a written file.
`heatgen sandbox env` without --write exists to print the credentials and is left out.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from heatgen.cli import main
from tests.faultproxy import proxied_sandbox, stacks_named, thesis_site

from .conftest import Sandbox

pytestmark = pytest.mark.sandbox


def test_debug_output_and_written_files_hold_no_secret(sandbox: Sandbox, tmp_path: Path) -> None:
    from heatgen.sandbox.settings import load_secrets

    name = "secret-grid"
    site = thesis_site(tmp_path, name)
    out_dir = tmp_path / "rendered"
    env_file = tmp_path / "written-clouds.yaml"
    texts: list[str] = []

    with proxied_sandbox(sandbox.config, tmp_path) as proxied:

        def run(*args: str) -> int:
            saved_env, saved_handlers = dict(os.environ), list(logging.getLogger().handlers)
            os.environ.update({"OS_CLIENT_CONFIG_FILE": str(proxied.clouds_yaml),
                               "OS_CLOUD": "heatgen-sandbox"})
            os.environ.pop("HEATGEN_SANDBOX_DIR", None)
            out, err = io.StringIO(), io.StringIO()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(["--debug", *args])
            finally:
                os.environ.clear()
                os.environ.update(saved_env)
                root = logging.getLogger()
                for handler in root.handlers[:]:
                    if handler not in saved_handlers:
                        root.removeHandler(handler)
                root.setLevel(logging.WARNING)
            texts.extend([out.getvalue(), err.getvalue()])
            return code

        state = ["--state-dir", str(sandbox.config.state_dir)]
        try:
            assert run("render", str(site), "-o", str(out_dir)) == 0
            assert run("schema") == 0
            assert run("deploy", str(site), "--dry-run") == 0
            assert run("deploy", str(site)) == 0
            assert run("deploy", str(site)) == 0
            assert run("scale", str(site), "--workers", "2", "--dry-run") == 0
            assert run("scale", str(site), "--workers", "2") == 0
            assert run("status", str(site)) == 0
            assert run("status", str(site), "--format", "json") == 0
            assert run("outputs", str(site)) == 0
            assert run("outputs", str(site), "--format", "json") == 0
            assert run("events", str(site)) == 0
            assert run("sandbox", "status", *state) == 0
            assert run("sandbox", "env", *state, "--write", str(env_file)) == 0

            resources = {r.resource_name: r for r in sandbox.heat.resources.list(name)}
            pool_secret = sandbox.heat.resources.get(
                name, "pool_secret", with_attr=["value"]).attributes["value"]
            handle_token = sandbox.heat.resources.get(
                name, "master_wait_handle", with_attr=["token"]).attributes["token"]
            token_handle_token = sandbox.heat.resources.get(
                name, "worker_token_handle", with_attr=["token"]).attributes["token"]
            # The execute nodes' token as the workers get it (here the sandbox's stand-in).
            worker_token = json.loads(sandbox.heat.resources.get(
                name, "worker_token_wait", with_attr=["data"]).attributes["data"])["worker_token"]
            outputs = {o["output_key"]: o["output_value"]
                       for o in sandbox.heat.stacks.get(name).to_dict()["outputs"]}
            signatures = [
                value
                for key in ("scale_up_alarm_url", "scale_down_alarm_url")
                if isinstance(outputs.get(key), str)
                for value in parse_qs(urlsplit(outputs[key]).query).get("Signature", [])
            ]
            assert "workers" in resources
            assert run("delete", str(site), "--yes") == 0
        finally:
            # Not a stack Heat still lists for a moment as DELETE_COMPLETE (deleting that one
            # again is an HTTP 400 "Internal Error").
            if stacks_named(sandbox.heat, name):
                sandbox.heat.stacks.delete(name)
        tokens = proxied.tokens()

    stored = load_secrets(sandbox.config)
    assert stored is not None
    secrets = {
        **{f"sandbox {k}": str(v) for k, v in asdict(stored).items() if len(str(v)) >= 8},
        **{f"token {i}": t for i, t in enumerate(sorted(tokens))},
        "pool secret": str(pool_secret),
        "wait handle token": str(handle_token),
        "worker token handle token": str(token_handle_token),
        "worker token": str(worker_token),
        **{f"signature {i}": s for i, s in enumerate(signatures)},
    }
    assert tokens and pool_secret and handle_token and signatures and len(worker_token) >= 32
    debug = "\n".join(texts)
    assert "REQ: curl" in debug  # --debug did log the API calls the check looks through
    written = {str(p): p.read_text(encoding="utf-8", errors="replace")
               for p in out_dir.rglob("*") if p.is_file()}
    assert written
    leaks = [(label, where, text[max(0, text.index(secret) - 300):text.index(secret)])
             for label, secret in secrets.items()
             for where, text in [("output", debug), *written.items()] if secret in text]
    assert leaks == []
    # The file `sandbox env --write` writes is a credentials file by design (mode 0600).
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
