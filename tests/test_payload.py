"""The boot payloads (cloud-init) of the master and the workers.

Checked with the real tools: cloud-init's schema validator, shellcheck, and HTCondor's own
configuration parser (the ``htcondor2`` bindings). The setup scripts themselves run under bash
against stub commands (package managers, systemctl, HTCondor tools) with every file they write
moved under a scratch root, and report to a wait-condition endpoint on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from heatgen.config import OsFamily, load_site, parse_yaml, validate_site
from heatgen.errors import ConfigError
from heatgen.render import CLOUD_CONFIGS, MASTER_BOOT, WORKER_BOOT, cloud_configs, render_site
from heatgen.render.payload import (
    DISTRIBUTIONS,
    payload_context,
    security_metaknob,
    version_glob,
)

from .conftest import example_paths

SECRET = "Zq8rT2mW9xLk4Pv7Nc3Hb6Jd1Fg5Sa0YeUoRiTyWpQaSdFgH"
WC_TOKEN = "gAAAAABtest-keystone-token-0123456789"
# What the condor_token_create stub prints: for the execute nodes, and for the master itself.
WORKER_TOKEN = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.worker-stub.token"
MASTER_TOKEN = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.master-stub.token"
MASTER_IP = "10.20.30.40"
POOL_NAME = "testpool"
SERVER_ID = "3f1c2a9e-5b7d-4e21-9a0c-8d6f4b2e1c77"
CONDOR_VERSION = "24.0.3"  # what the condor_version stub prints for channel 24.0

MASTER_MARKERS = (
    "__HEATGEN_WC_NOTIFY__",
    "__HEATGEN_WT_NOTIFY__",
    "__HEATGEN_POOL_SECRET__",
    "__HEATGEN_POOL_NAME__",
    "__HEATGEN_MASTER_IP__",
)
WORKER_MARKERS = ("__HEATGEN_WORKER_TOKEN__", "__HEATGEN_MASTER_IP__")
MARKERS = (*MASTER_MARKERS, "__HEATGEN_WORKER_TOKEN__")
SECURITY_LEVELS = (
    "DEFAULT",
    "CLIENT",
    "READ",
    "WRITE",
    "ADMINISTRATOR",
    "CONFIG",
    "DAEMON",
    "NEGOTIATOR",
    "ADVERTISE_MASTER",
    "ADVERTISE_STARTD",
    "ADVERTISE_SCHEDD",
)

EXAMPLES = example_paths()
CASES = [(example, name) for example in EXAMPLES for name in cloud_configs(load_site(example))]
# every worker boot payload of every example: one per worker group
WORKER_CASES = [case for case in CASES if case[1] != MASTER_BOOT]


def _case_id(case: tuple[Path, str]) -> str:
    return f"{case[0].stem}-{case[1].removesuffix('.yaml').replace('-boot', '')}"


def _groups(example: Path) -> list[tuple[str, str, str]]:
    """(AutoScalingGroup, member template, boot payload) of each worker group."""
    return [(g.names.resource, g.names.member_template, g.names.boot_file)
            for g in load_site(example).groups]


@cache
def _rendered(example: Path) -> dict[str, str]:
    return dict(render_site(load_site(example)).files)


def _cloud_config(example: Path, name: str) -> str:
    return _rendered(example)[name]


def _write_files(text: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load(text)
    entries: list[dict[str, Any]] = doc["write_files"]
    return entries


def _scripts(text: str) -> list[dict[str, Any]]:
    return [e for e in _write_files(text) if e["content"].startswith("#!")]


def _entry(text: str, path: str) -> dict[str, Any]:
    matches = [e for e in _write_files(text) if e["path"] == path]
    assert len(matches) == 1, f"{path} is written {len(matches)} times"
    return matches[0]


def _notify(url: str) -> str:
    """The wait handle's curl_cli as Heat renders it, pointing at ``url``."""
    return (
        f"curl -i -X POST -H 'X-Auth-Token: {WC_TOKEN}' -H 'Content-Type: application/json' "
        f"-H 'Accept: application/json' {url}"
    )


def _token_url(url: str) -> str:
    """The worker token handle's URL beside the master handle's ``url``."""
    return url.replace("master_wait_handle", "worker_token_handle")


def _heat_substitute(text: str, notify: str = "", token_notify: str = "",
                     worker_data: str | None = None) -> str:
    """Replace the markers the way Heat's str_replace does at boot."""
    values = {
        "__HEATGEN_WC_NOTIFY__": notify or _notify("http://127.0.0.1:9/signal"),
        "__HEATGEN_WT_NOTIFY__": token_notify or notify or _notify("http://127.0.0.1:9/signal"),
        # The worker_token_wait's data attribute: Heat's JSON of {signal id: data}.
        "__HEATGEN_WORKER_TOKEN__": json.dumps({"worker_token": WORKER_TOKEN})
        if worker_data is None else worker_data,
        "__HEATGEN_POOL_SECRET__": SECRET,
        "__HEATGEN_POOL_NAME__": POOL_NAME,
        "__HEATGEN_MASTER_IP__": MASTER_IP,
    }
    for marker, value in values.items():
        text = text.replace(marker, value)
    return text


SETUP_TOOLS = ("shellcheck", "cloud-init")  # scripts/setup.sh installs these
DEBIAN_PACKAGES = {"nft": "nftables"}


def _needs(tool: str) -> str:
    """The path of ``tool``, or skip the test saying how to get it."""
    path = shutil.which(tool)
    if path is None:
        hint = "; scripts/setup.sh installs it" if tool in SETUP_TOOLS else ""
        package = DEBIAN_PACKAGES.get(tool, tool)
        pytest.skip(f"{tool} is not installed (Debian package {package}{hint})")
    return path


# --- cloud-init and shellcheck ---------------------------------------------------------------


def _variants(case: tuple[Path, str]) -> tuple[tuple[str, str], ...]:
    """A case's cloud-config as heatgen renders it and as it boots (markers filled in)."""
    text = _cloud_config(*case)
    return (("rendered", text), ("booted", _heat_substitute(text)))


@dataclass(frozen=True)
class Checked:
    """What one run of a checking tool said."""

    returncode: int
    stdout: str
    stderr: str


# `cloud-init schema --config-file PATH` for many files in one process (most of a run of its
# own is cloud-init's start-up): cloud-init's own entry script, run once per file the way its
# interpreter runs it, with that run's stdout and stderr in files of their own and its exit
# status (SystemExit, or 1 after a traceback) collected.
SCHEMA_RUNS = textwrap.dedent(
    """
    import json, os, runpy, sys, traceback
    cloud_init, runs = sys.argv[1], json.loads(sys.argv[2])
    codes = []
    for path, out, err in runs:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(out, "wb") as out_file, open(err, "wb") as err_file:
            os.dup2(out_file.fileno(), 1)
            os.dup2(err_file.fileno(), 2)
            sys.argv = [cloud_init, "schema", "--config-file", path]
            try:
                runpy.run_path(cloud_init, run_name="__main__")
                code = 0
            except SystemExit as exit:
                code = exit.code
                if code is None:
                    code = 0
                elif not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        codes.append(code)
    print(json.dumps(codes))
    """
)


def _python_script(path: str) -> list[str] | None:
    """The interpreter command of a Python script's #! line; None for anything else."""
    with open(path, "rb") as file:
        first = file.readline().decode("utf-8", "replace").strip()
    if not first.startswith("#!") or "python" not in first:
        return None
    return shlex.split(first[2:])


def _cloud_init_schema(cloud_init: str, paths: list[Path]) -> list[Checked]:
    """`cloud-init schema --config-file PATH` of each of ``paths``."""
    interpreter = _python_script(cloud_init)
    if interpreter is None:  # not the usual Python entry script: one process per file
        return [
            Checked(r.returncode, r.stdout, r.stderr)
            for r in (subprocess.run([cloud_init, "schema", "--config-file", str(path)],
                                     capture_output=True, text=True, check=False)
                      for path in paths)
        ]
    runs = [(str(path), f"{path}.stdout", f"{path}.stderr") for path in paths]
    result = subprocess.run([*interpreter, "-c", SCHEMA_RUNS, cloud_init, json.dumps(runs)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"cloud-init schema runs:\n{result.stdout}{result.stderr}"
    codes = json.loads(result.stdout.splitlines()[-1])
    return [
        Checked(code, Path(out).read_text(encoding="utf-8", errors="replace"),
                Path(err).read_text(encoding="utf-8", errors="replace"))
        for code, (_, out, err) in zip(codes, runs, strict=True)
    ]


@pytest.fixture(scope="module")
def cloud_init_verdicts(tmp_path_factory: pytest.TempPathFactory
                        ) -> dict[tuple[str, str], Checked]:
    """`cloud-init schema` of every case's cloud-config, rendered and booted, by (case id,
    label): all of them in one process."""
    cloud_init = _needs("cloud-init")
    root = tmp_path_factory.mktemp("cloud-init")
    paths: dict[tuple[str, str], Path] = {}
    for case in CASES:
        try:
            variants = _variants(case)
        except Exception:  # noqa: BLE001 (the case's own test renders it again, and fails)
            continue
        for label, content in variants:
            path = root / f"{_case_id(case)}-{label}.yaml"
            path.write_text(content, encoding="utf-8")
            paths[(_case_id(case), label)] = path
    return dict(zip(paths, _cloud_init_schema(cloud_init, list(paths.values())), strict=True))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cloud_config_passes_cloud_init_schema(
    case: tuple[Path, str], cloud_init_verdicts: dict[tuple[str, str], Checked]
) -> None:
    for label, _ in _variants(case):
        result = cloud_init_verdicts[(_case_id(case), label)]
        assert result.returncode == 0, f"{label}: {result.stdout}{result.stderr}"
        assert "Valid" in result.stdout + result.stderr


SHELLCHECK = ("--shell=bash", "--severity=style")


def _shellcheckrcs(start: Path) -> list[Path]:
    """The .shellcheckrc files shellcheck looks for from ``start`` (a script's directory, or
    the working directory for a script on stdin) upwards."""
    return [d / ".shellcheckrc" for d in (start, *start.parents) if (d / ".shellcheckrc").is_file()]


@pytest.fixture(scope="module")
def shellcheck_clean(tmp_path_factory: pytest.TempPathFactory) -> frozenset[str]:
    """The scripts (their text) of every case, rendered and booted, that shellcheck passes: two
    shellcheck runs over files, side by side, each file one distinct script. A run that finds
    anything vouches for none of its scripts, and the cases check those one by one, on stdin,
    as before (with shellcheck's message for each)."""
    shellcheck = _needs("shellcheck")
    root = tmp_path_factory.mktemp("shellcheck")
    if _shellcheckrcs(root) != _shellcheckrcs(Path.cwd()):
        return frozenset()  # the files would be read with other settings than stdin
    contents: set[str] = set()
    for case in CASES:
        try:
            variants = _variants(case)
        except Exception:  # noqa: BLE001 (the case's own test renders it again, and fails)
            continue
        contents.update(e["content"] for _, text in variants for e in _scripts(text))
    chunks: list[list[str]] = [[], []]
    for content in sorted(contents, key=len, reverse=True):
        min(chunks, key=lambda chunk: sum(map(len, chunk))).append(content)
    runs = []
    for number, chunk in enumerate(chunks):
        paths = []
        for index, content in enumerate(chunk):
            path = root / f"{number}-{index}.sh"
            path.write_text(content, encoding="utf-8")
            paths.append(str(path))
        if paths:
            process = subprocess.Popen([shellcheck, *SHELLCHECK, *paths],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs.append((chunk, process))
    return frozenset(content for chunk, process in runs if process.wait() == 0
                     for content in chunk)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_scripts_pass_shellcheck(case: tuple[Path, str], shellcheck_clean: frozenset[str]
                                 ) -> None:
    shellcheck = _needs("shellcheck")
    text = _cloud_config(*case)
    scripts = _scripts(text)
    assert {e["path"] for e in scripts} >= {"/usr/local/sbin/heatgen-metadata-guard"}
    for label, content in _variants(case):
        for entry in _scripts(content):
            if entry["content"] in shellcheck_clean:
                continue
            result = subprocess.run(
                [shellcheck, *SHELLCHECK, "-"],
                input=entry["content"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"{label} {entry['path']}:\n{result.stdout}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_scripts_never_trace_and_are_root_only(case: tuple[Path, str]) -> None:
    text = _cloud_config(*case)
    for entry in _scripts(text):
        content = entry["content"]
        assert content.splitlines()[0] == "#!/bin/bash", entry["path"]
        assert not re.search(r"set\s+-[a-zA-Z]*x|set\s+-o\s+xtrace|bash\s+-[a-zA-Z]*x", content)
        assert entry["owner"] == "root:root"
        assert entry["permissions"] == "0700"
    doc = yaml.safe_load(text)
    commands = [c[0] if isinstance(c, list) else c for c in doc["runcmd"]]
    assert commands and all(not str(c).startswith(("bash -x", "sh -x")) for c in commands)


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_rendered_files_hold_only_the_secret_marker(example: Path) -> None:
    files = _rendered(example)
    # The signing key reaches only the master's payload; the workers get the master's token.
    groups = _groups(example)
    homes = {MASTER_BOOT: ("__HEATGEN_POOL_SECRET__", "/etc/heatgen/pool-secret")}
    homes.update({boot: ("__HEATGEN_WORKER_TOKEN__", "/etc/heatgen/worker-token")
                  for _, _, boot in groups})
    for name, text in files.items():
        assert SECRET not in text and WORKER_TOKEN not in text
        if name in homes:
            marker, path = homes[name]
            assert text.count(marker) == 1, name
            secret = _entry(text, path)
            assert secret["content"] == marker + "\n"
            assert secret["owner"] == "root:root"
            assert secret["permissions"] == "0600"
            for entry in _write_files(text):
                if entry["path"] != path:
                    assert marker not in entry["content"], entry["path"]
    main = parse_yaml(files["grid.yaml"], "grid.yaml")
    outputs = json.dumps(main["outputs"])
    assert "pool_secret" not in outputs and "worker_token" not in outputs
    for resource, member_template, boot in groups:
        assert "POOL_SECRET" not in files[boot] and "pool_secret" not in files[member_template]
        assert "passwords.d" not in files[boot]
        member = main["resources"][resource]["properties"]["resource"]["properties"]
        assert member["worker_token"] == {"get_attr": ["worker_token_wait", "data"]}
        assert "pool_secret" not in json.dumps(main["resources"][resource])
        worker_params = parse_yaml(files[member_template], member_template)["parameters"]
        assert worker_params["worker_token"]["hidden"] is True


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_heat_markers_are_fed_by_the_templates(example: Path) -> None:
    files = _rendered(example)
    grid = parse_yaml(files["grid.yaml"], "grid.yaml")
    master_params = grid["resources"]["master"]["properties"]["user_data"]["str_replace"]["params"]
    used_master = {m for m in MARKERS if m in files[MASTER_BOOT]}
    assert used_master <= set(master_params)
    assert used_master == set(MASTER_MARKERS)
    for _, member_template, boot in _groups(example):
        member = parse_yaml(files[member_template], member_template)
        user_data = member["resources"]["server"]["properties"]["user_data"]["str_replace"]
        assert user_data["template"] == {"get_file": boot}
        used_worker = {m for m in MARKERS if m in files[boot]}
        assert used_worker <= set(user_data["params"])
        assert used_worker == set(WORKER_MARKERS)
        leftover = re.findall(r"__HEATGEN_[A-Z_]+__", files[MASTER_BOOT] + files[boot])
        assert set(leftover) <= set(MARKERS)


# --- running the setup scripts ---------------------------------------------------------------


@dataclass
class Recorder:
    """A fake wait-condition handle on 127.0.0.1 that records every request."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def handle() -> Iterator[Recorder]:
    recorder = Recorder(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            recorder.requests.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length).decode("utf-8"),
                }
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"null")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    recorder.url = f"http://127.0.0.1:{port}/v1/stacks/grid/id/resources/master_wait_handle/signal"
    # shutdown() waits for serve_forever's next poll: a short one lets the test end at once.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


# Real tools the scripts may use; everything else resolves to a stub or not at all.
REAL_TOOLS = (
    "bash",
    "cat",
    "tail",
    "cut",
    "tr",
    "rm",
    "install",
    "date",
    "mkdir",
    "chmod",
    "head",
    "sed",
    "grep",
    "env",
    "ls",
    "wc",
)

STUB = """#!/bin/bash
# Stub of {name}: logs its arguments, fails on demand, otherwise plays its part.
printf '%s\\n' "{name} $*" >>"$STUB_DIR/calls.log"
if [ -n "${{STUB_FAIL_{var}:-}}" ]; then
  printf '%s\\n' "$STUB_FAIL_{var}" >&2
  exit 1
fi
{body}
exit 0
"""

STUB_BODIES = {
    "dnf": "",
    "apt-get": "",
    "crb": "",
    "systemctl": "",
    "nft": 'cat >>"$STUB_DIR/nft.rules"',
    "sleep": "",
    "condor_version": (
        'printf "\\$CondorVersion: %s 2025-01-01 BuildID: 1 PackageID: x \\$\\n" '
        '"${STUB_CONDOR_VERSION:-24.0.3}"\n'
        'printf "\\$CondorPlatform: x86_64_AlmaLinux9 \\$\\n"'
    ),
    "dpkg-query": (
        'if [ -z "${STUB_DPKG_INSTALLED:-}" ]; then\n'
        '  printf "dpkg-query: no packages found matching %s\\n" "$*" >&2\n'
        "  exit 1\n"
        "fi\n"
        'for arg in "$@"; do\n'
        '  case " ${STUB_DPKG_INSTALLED} " in\n'
        '    *" ${arg} "*) printf "install ok installed\\n" ;;\n'
        "  esac\n"
        "done"
    ),
    "condor_store_cred": 'cat >"$HEATGEN_ROOT/etc/condor/passwords.d/POOL"',
    "condor_token_create": (
        'case " $* " in\n'
        f'  *" -identity heatgen-worker@"*) printf "%s\\n" "{WORKER_TOKEN}" ;;\n'
        f'  *) printf "%s\\n" "{MASTER_TOKEN}" ;;\n'
        "esac"
    ),
    "condor_status": (
        'if [ -n "${STUB_STATUS_EMPTY:-}" ]; then exit 0; fi\n'
        'case " $* " in\n'
        '  *" -any "*) printf "DaemonMaster\\nCollector\\nNegotiator\\nScheduler\\n" ;;\n'
        '  *" -constraint "*) printf "slot1@worker-1\\n" ;;\n'
        "esac"
    ),
}

CURL_SHIM = """#!/bin/bash
# curl: requests to 127.0.0.1 go to the real curl, everything else is a logged stub.
# STUB_CURL_RETRY_DELAY, if set, replaces the payload's --retry-delay (curl takes whole
# seconds) for the real curl: a test of a handle that never answers waits less on retries.
for arg in "$@"; do
  case $arg in
    http://127.0.0.1:*)
      if [ -n "${{STUB_CURL_RETRY_DELAY:-}}" ]; then
        args=()
        prev=""
        for word in "$@"; do
          if [ "$prev" = "--retry-delay" ]; then
            args+=("$STUB_CURL_RETRY_DELAY")
          else
            args+=("$word")
          fi
          prev=$word
        done
        set -- "${{args[@]}}"
      fi
      exec {real} "$@" ;;
  esac
done
printf '%s\\n' "curl $*" >>"$STUB_DIR/calls.log"
if [ -n "${{STUB_FAIL_curl:-}}" ]; then
  printf '%s\\n' "$STUB_FAIL_curl" >&2
  exit 22
fi
out=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "-o" ]; then out=$arg; fi
  prev=$arg
done
if [ -n "$out" ]; then printf 'stub key\\n' >"$out"; fi
case " $* " in
  *meta_data.json*) printf '{{"uuid": "%s", "name": "worker"}}\\n' "${{STUB_UUID:-}}" ;;
esac
exit 0
"""


@dataclass
class Run:
    """One run of a setup script under stubs."""

    returncode: int
    stdout: str
    stderr: str
    root: Path
    stubs: Path

    def calls(self) -> list[str]:
        log = self.stubs / "calls.log"
        return log.read_text(encoding="utf-8").splitlines() if log.exists() else []

    def everything_written(self) -> str:
        """Console output plus every file under the scratch root, as text, except the two
        root-only files that are meant to hold the secret (checked for mode 0600)."""
        parts = [self.stdout, self.stderr]
        for path in sorted(self.root.rglob("*")):
            if not path.is_file():
                continue
            if path.relative_to(self.root).as_posix() in SECRET_HOMES:
                assert path.stat().st_mode & 0o077 == 0, path
                continue
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)


def _install_stubs(base: Path) -> tuple[Path, Path]:
    stubs = base / "stubs"
    tools = base / "tools"
    stubs.mkdir()
    tools.mkdir()
    for name, body in STUB_BODIES.items():
        var = name.replace("-", "_")
        path = stubs / name
        path.write_text(STUB.format(name=name, var=var, body=body), encoding="utf-8")
        path.chmod(0o755)
    real_curl = _needs("curl")
    (stubs / "curl").write_text(CURL_SHIM.format(real=real_curl), encoding="utf-8")
    (stubs / "curl").chmod(0o755)
    for tool in REAL_TOOLS:
        real = shutil.which(tool)
        if real is not None:
            (tools / tool).symlink_to(real)
    return stubs, tools


def _unpack(text: str, root: Path) -> None:
    """Write a cloud-config's write_files under ``root`` like cloud-init would."""
    for entry in _write_files(text):
        path = root / entry["path"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry["content"], encoding="utf-8")
        path.chmod(int(entry["permissions"], 8))


def _stub_condor_version(text: str) -> str:
    """What the condor_version stub prints for the channel a setup script installs: a patch
    release of that channel (24.0.3 for 24.0 and 24.x, 23.9.3 for 23.9)."""
    match = re.search(r"^\s*channel='([^']+)'$", text, flags=re.MULTILINE)
    assert match is not None, "the setup script names no channel"
    major, _, minor = match.group(1).partition(".")
    return f"{major}.{'0' if minor == 'x' else minor}.3"


def _run_setup(
    text: str,
    script: str,
    base: Path,
    notify: str = "",
    env: dict[str, str] | None = None,
    instance_id: str | None = SERVER_ID,
    token_notify: str = "",
    worker_data: str | None = None,
) -> Run:
    booted = _heat_substitute(text, notify, token_notify, worker_data)
    root = base / "root"
    root.mkdir()
    _unpack(booted, root)
    if instance_id is not None:
        (root / "var/lib/cloud/data").mkdir(parents=True)
        (root / "var/lib/cloud/data/instance-id").write_text(instance_id + "\n", encoding="utf-8")
    stubs, tools = _install_stubs(base)
    run_env = {
        "PATH": f"{stubs}:{tools}",
        "HEATGEN_ROOT": str(root),
        "STUB_DIR": str(stubs),
        "LC_ALL": "C.UTF-8",
        "STUB_CONDOR_VERSION": _stub_condor_version(booted),
        **(env or {}),
    }
    bash = _needs("bash")
    result = subprocess.run(
        [bash, str(root / script.lstrip("/"))],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr, root, stubs)


MASTER_SCRIPT = "/usr/local/sbin/heatgen-master-setup"
GUARD_SCRIPT = "/usr/local/sbin/heatgen-metadata-guard"
SECRET_HOMES = ("etc/heatgen/pool-secret", "etc/condor/passwords.d/POOL",
                "etc/condor/tokens.d/heatgen-worker", "etc/condor/tokens.d/heatgen-condor")
WORKER_SCRIPT = "/usr/local/sbin/heatgen-worker-setup"


def _example(stem: str) -> Path:
    return next(p for p in EXAMPLES if p.stem == stem)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_master_signals_success_with_its_address_and_version(
    example: Path, tmp_path: Path, handle: Recorder
) -> None:
    text = _cloud_config(example, MASTER_BOOT)
    run = _run_setup(text, MASTER_SCRIPT, tmp_path, _notify(handle.url),
                     token_notify=_notify(_token_url(handle.url)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(handle.requests) == 2
    # First the execute nodes' token to its own handle (the workers wait for it), then ready.
    given, request = handle.requests
    assert given["path"].endswith("/resources/worker_token_handle/signal")
    assert given["headers"]["X-Auth-Token"] == WC_TOKEN
    assert json.loads(given["body"]) == {"status": "SUCCESS", "id": "worker_token",
                                         "reason": "execute-node token issued",
                                         "data": WORKER_TOKEN}
    assert request["path"].endswith("/resources/master_wait_handle/signal")
    assert request["headers"]["X-Auth-Token"] == WC_TOKEN
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert body["status"] == "SUCCESS"
    assert f"private_ip={MASTER_IP}" in body["data"]
    assert f"condor_version={_stub_condor_version(text)}" in body["data"]
    assert POOL_NAME in body["reason"]
    # The pool key came from the secret, the secret file is gone, a token exists.
    pool_key = run.root / "etc/condor/passwords.d/POOL"
    assert pool_key.read_text(encoding="utf-8") == SECRET
    assert not (run.root / "etc/heatgen/pool-secret").exists()
    token = run.root / "etc/condor/tokens.d/heatgen-condor"
    assert token.stat().st_mode & 0o077 == 0
    calls = run.calls()
    assert f"condor_token_create -identity condor@{MASTER_IP}" in calls
    assert (f"condor_token_create -identity heatgen-worker@{MASTER_IP} -authz ADVERTISE_STARTD "
            "-authz ADVERTISE_MASTER -authz READ") in calls
    assert "systemctl restart condor" in calls
    assert "systemctl enable --now heatgen-metadata-guard.service" in calls
    assert calls.index("systemctl enable --now heatgen-metadata-guard.service") < calls.index(
        "systemctl restart condor"
    )
    # Neither the secret nor the Heat token shows up anywhere but where they belong.
    written = run.everything_written()
    assert SECRET not in written and WORKER_TOKEN not in written
    assert SECRET not in request["body"] + given["body"]
    assert WORKER_TOKEN not in request["body"]
    stdout_and_logs = run.stdout + run.stderr + (run.root / "var/log/heatgen/boot.log").read_text()
    assert WC_TOKEN not in stdout_and_logs
    # The token travels on curl's stdin, never on a command line.
    assert not any(WORKER_TOKEN in c for c in calls)


# A handle that never answers: the payload's curl still retries (once, within the test's
# --retry-max-time 1), after 1 s rather than its own --retry-delay 5.
UNREACHABLE_RETRY = {"STUB_CURL_RETRY_DELAY": "1"}


def test_master_fails_when_heat_refuses_the_workers_token(tmp_path: Path, handle: Recorder
                                                          ) -> None:
    run = _run_setup(_cloud_config(_example("minimal"), MASTER_BOOT), MASTER_SCRIPT, tmp_path,
                     _notify(handle.url),
                     token_notify=_notify("http://127.0.0.1:9/unreachable") + " --retry-max-time 1",
                     env=UNREACHABLE_RETRY)
    assert run.returncode != 0
    [body] = handle.bodies()
    assert body["status"] == "FAILURE"
    assert body["reason"].startswith("master: issuing the execute nodes' token")
    assert WORKER_TOKEN not in run.stdout + run.stderr + json.dumps(body)


@pytest.mark.parametrize(
    ("stem", "manager"),
    [("minimal", "dnf"), ("manual", "apt_get"), ("prometheus", "apt_get"), ("debian13", "apt_get")],
)
def test_master_signals_failure_when_the_install_fails(
    stem: str, manager: str, tmp_path: Path, handle: Recorder
) -> None:
    message = 'E: Unable to locate package "condor" \\ nothing to do\ttab'
    run = _run_setup(
        _cloud_config(_example(stem), MASTER_BOOT),
        MASTER_SCRIPT,
        tmp_path,
        _notify(handle.url),
        env={f"STUB_FAIL_{manager}": message},
    )
    assert run.returncode != 0
    assert len(handle.requests) == 1
    body = json.loads(handle.requests[0]["body"])  # valid JSON despite quotes and backslashes
    assert body["status"] == "FAILURE"
    assert body["reason"].startswith("master: installing HTCondor")
    assert 'E: Unable to locate package "condor" \\ nothing to do\ttab' in body["reason"]
    assert "heatgen: FAILED: installing HTCondor" in run.stdout
    assert "systemctl restart condor" not in run.calls()
    assert SECRET not in run.everything_written()


@pytest.mark.parametrize(
    ("env", "step"),
    [
        ({"STUB_CONDOR_VERSION": "23.10.1"}, "checking the installed HTCondor version"),
        ({"STUB_FAIL_condor_store_cred": "cannot write"}, "storing the pool signing key"),
        ({"STUB_FAIL_systemctl": "Unit condor.service not found."}, "restricting the metadata"),
        ({"STUB_STATUS_EMPTY": "1"}, "waiting for the collector, negotiator and schedd"),
    ],
)
def test_master_signals_failure_of_each_step(
    env: dict[str, str], step: str, tmp_path: Path, handle: Recorder
) -> None:
    run = _run_setup(
        _cloud_config(_example("minimal"), MASTER_BOOT),
        MASTER_SCRIPT,
        tmp_path,
        _notify(handle.url),
        env=env,
    )
    assert run.returncode != 0
    bodies = handle.bodies()
    assert [b["status"] for b in bodies] == ["FAILURE"]
    assert bodies[0]["reason"].startswith(f"master: {step}")
    assert SECRET not in run.everything_written() + handle.requests[0]["body"]


def test_master_without_heat_values_fails_fast(tmp_path: Path, handle: Recorder) -> None:
    text = _cloud_config(_example("minimal"), MASTER_BOOT).replace(
        "__HEATGEN_MASTER_IP__", "__HEATGEN_UNSET__"
    )
    run = _run_setup(text, MASTER_SCRIPT, tmp_path, _notify(handle.url))
    assert run.returncode != 0
    body = handle.bodies()[0]
    assert body["status"] == "FAILURE"
    assert "not filled in by Heat" in body["reason"]
    assert not any(c.startswith("dnf") for c in run.calls())


def test_master_reports_a_failed_success_signal_as_exit_status(tmp_path: Path, handle: Recorder
                                                               ) -> None:
    run = _run_setup(
        _cloud_config(_example("minimal"), MASTER_BOOT),
        MASTER_SCRIPT,
        tmp_path,
        _notify("http://127.0.0.1:9/unreachable") + " --retry-max-time 1",
        token_notify=_notify(_token_url(handle.url)),
        env=UNREACHABLE_RETRY,
    )
    assert run.returncode != 0
    assert "signalling SUCCESS to Heat" in run.stdout
    assert WC_TOKEN not in run.stdout + run.stderr


@pytest.mark.parametrize("case", WORKER_CASES, ids=_case_id)
def test_worker_joins_with_its_server_id(case: tuple[Path, str], tmp_path: Path) -> None:
    run = _run_setup(_cloud_config(*case), WORKER_SCRIPT, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    server_conf = run.root / "etc/condor/config.d/60-heatgen-server-id.conf"
    text = server_conf.read_text(encoding="utf-8")
    assert f'HeatGenServerId = "{SERVER_ID}"' in text
    assert "STARTD_ATTRS = $(STARTD_ATTRS) HeatGenServerId" in text
    # No signing key here: the worker stores the master's token and mints none of its own.
    assert not (run.root / "etc/condor/passwords.d").exists()
    token = run.root / "etc/condor/tokens.d/heatgen-worker"
    assert token.read_text(encoding="utf-8") == WORKER_TOKEN + "\n"
    assert token.stat().st_mode & 0o077 == 0
    assert not (run.root / "etc/heatgen/worker-token").exists()
    calls = run.calls()
    assert not any(c.startswith(("condor_token_create", "condor_store_cred")) for c in calls)
    assert any(
        f'HeatGenServerId == "{SERVER_ID}"' in c for c in calls if c.startswith("condor_status")
    )
    assert calls.index("systemctl restart condor") > 0
    written = run.everything_written()
    assert SECRET not in written and WORKER_TOKEN not in written
    assert not any(WORKER_TOKEN in c for c in calls)


@pytest.mark.parametrize("data", ["", "{}", '{"master": "private_ip=10.0.0.1"}',
                                  '{"worker_token": "not a token; rm -rf /"}'])
def test_worker_without_the_masters_token_fails_before_starting_htcondor(
    data: str, tmp_path: Path
) -> None:
    run = _run_setup(_cloud_config(_example("minimal"), WORKER_BOOT), WORKER_SCRIPT, tmp_path,
                     worker_data=data)
    assert run.returncode != 0
    assert "worker setup failed: storing the execute-node token failed" in run.stderr
    assert "systemctl restart condor" not in run.calls()


def test_worker_asks_the_metadata_service_without_a_cloud_init_id(tmp_path: Path) -> None:
    run = _run_setup(
        _cloud_config(_example("minimal"), WORKER_BOOT),
        WORKER_SCRIPT,
        tmp_path,
        env={"STUB_UUID": SERVER_ID},
        instance_id="i-00000042",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert any("169.254.169.254/openstack/latest/meta_data.json" in c for c in run.calls())
    conf = (run.root / "etc/condor/config.d/60-heatgen-server-id.conf").read_text()
    assert SERVER_ID in conf


def test_worker_fails_loudly_without_a_server_id(tmp_path: Path) -> None:
    run = _run_setup(
        _cloud_config(_example("minimal"), WORKER_BOOT),
        WORKER_SCRIPT,
        tmp_path,
        instance_id=None,
    )
    assert run.returncode != 0
    assert "worker setup failed: reading this server's Nova id failed" in run.stderr
    assert "systemctl restart condor" not in run.calls()


def test_metadata_guard_limits_the_metadata_service_to_root(tmp_path: Path) -> None:
    text = _cloud_config(_example("minimal"), WORKER_BOOT)
    root = tmp_path / "root"
    root.mkdir()
    _unpack(text, root)
    stubs, tools = _install_stubs(tmp_path)
    result = subprocess.run(
        [_needs("bash"), str(root / "usr/local/sbin/heatgen-metadata-guard")],
        env={"PATH": f"{stubs}:{tools}", "STUB_DIR": str(stubs)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rules = (stubs / "nft.rules").read_text(encoding="utf-8")
    assert "ip daddr 169.254.169.254 meta skuid != 0 counter reject" in rules
    assert "hook forward" in rules
    unit = _entry(text, "/etc/systemd/system/heatgen-metadata-guard.service")["content"]
    assert "Before=condor.service" in unit and "RequiredBy=condor.service" in unit


def test_metadata_guard_ruleset_is_valid_nftables(tmp_path: Path) -> None:
    nft = _needs("nft")
    script = _entry(_cloud_config(_example("minimal"), MASTER_BOOT), GUARD_SCRIPT)["content"]
    match = re.search(r"<<'EOF'\n(.*?)^EOF$", script, flags=re.DOTALL | re.MULTILINE)
    assert match is not None
    rules = tmp_path / "guard.nft"
    rules.write_text(match.group(1), encoding="utf-8")
    result = subprocess.run(
        [nft, "--check", "--file", str(rules)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip("nft --check needs CAP_NET_ADMIN here")
    assert result.returncode == 0, result.stderr


# --- HTCondor's own configuration parser -----------------------------------------------------

PARAM_PROBE = textwrap.dedent(
    """
    import json, sys
    import htcondor2
    names = json.loads(sys.argv[1])
    values = {name: htcondor2.param.get(name) for name in names}
    print(json.dumps({k: None if v is None else str(v) for k, v in values.items()}))
    """
)

# The packages' condor_config sets ETC = /etc/condor and LOCAL_CONFIG_DIR = /etc/condor/config.d
# and ships this file in config.d (HTCondor >= 9.0: src/condor_examples/00-htcondor-9.0.config).
PACKAGE_CONFIG = "use security : recommended_v9_0\n"


def _htcondor_params(root: Path, names: list[str]) -> dict[str, str | None]:
    pytest.importorskip("htcondor2", reason="the htcondor package (test extra) is not installed")
    config_dir = root / "etc/condor/config.d"
    (config_dir / "00-htcondor-9.0.config").write_text(PACKAGE_CONFIG, encoding="utf-8")
    local = root / "var/lib/condor"
    local.mkdir(parents=True, exist_ok=True)
    base = root / "etc/condor/condor_config"
    base.write_text(
        f"RELEASE_DIR = /usr\nLOCAL_DIR = {local}\nETC = {root / 'etc/condor'}\n"
        f"LOCAL_CONFIG_DIR = {config_dir}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDOR_", "_CONDOR_"))}
    env["CONDOR_CONFIG"] = str(base)
    result = subprocess.run(
        [sys.executable, "-c", PARAM_PROBE, json.dumps(names)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"HTCondor rejected the configuration:\n{result.stdout}{result.stderr}"
    )
    values: dict[str, str | None] = json.loads(result.stdout.splitlines()[-1])
    return values


def _methods(value: str | None) -> set[str]:
    return {m.strip().upper() for m in re.split(r"[,\s]+", value or "") if m.strip()}


def _check_security(params: dict[str, str | None], root: Path) -> None:
    for knob in ("AUTHENTICATION", "ENCRYPTION", "INTEGRITY"):
        assert (params[f"SEC_DEFAULT_{knob}"] or "").upper() == "REQUIRED", knob
    for level in SECURITY_LEVELS:
        methods = params[f"SEC_{level}_AUTHENTICATION_METHODS"]
        if methods is None:
            continue
        assert _methods(methods) <= {"FS", "IDTOKENS"}, (
            f"SEC_{level}_AUTHENTICATION_METHODS = {methods}"
        )
    assert "IDTOKENS" in _methods(params["SEC_DEFAULT_AUTHENTICATION_METHODS"])
    assert params["CONDOR_HOST"] == MASTER_IP
    assert params["TRUST_DOMAIN"] == MASTER_IP
    assert (params["USE_SHARED_PORT"] or "").lower() == "true"
    assert params["SHARED_PORT_PORT"] == "9618"
    # Every read is authenticated too (the metaknob leaves READ OPTIONAL).
    assert (params["SEC_READ_AUTHENTICATION"] or "").upper() == "REQUIRED"
    assert params["SEC_TOKEN_SYSTEM_DIRECTORY"] == str(root / "etc/condor/tokens.d")
    if "COLLECTOR" in (params["DAEMON_LIST"] or ""):
        # The key condor_store_cred -c stores is the IDTOKENS signing key, and the setup
        # script wrote its own token where the daemons look.
        assert params["SEC_TOKEN_POOL_SIGNING_KEY_FILE"] == params["SEC_PASSWORD_FILE"]
        assert params["SEC_PASSWORD_FILE"] == str(root / "etc/condor/passwords.d/POOL")
        assert (root / "etc/condor/passwords.d/POOL").is_file()
        assert (root / "etc/condor/tokens.d/heatgen-condor").is_file()
        # The execute nodes' identity may advertise a startd and a master, nothing else.
        worker = f"heatgen-worker@{MASTER_IP}"
        for level in ("ADVERTISE_STARTD", "ADVERTISE_MASTER"):
            assert worker in (params[f"ALLOW_{level}"] or "").split(), level
        for level in ("ADMINISTRATOR", "DAEMON", "NEGOTIATOR", "ADVERTISE_SCHEDD", "CONFIG"):
            assert "heatgen-worker" not in (params[f"ALLOW_{level}"] or ""), level
    else:
        # An execute node holds the master's token and no signing key.
        assert not (root / "etc/condor/passwords.d").exists()
        assert (root / "etc/condor/tokens.d/heatgen-worker").is_file()
        assert not (root / "etc/condor/tokens.d/heatgen-condor").exists()


def _param_names() -> list[str]:
    names = [
        "DAEMON_LIST",
        "CONDOR_HOST",
        "TRUST_DOMAIN",
        "COLLECTOR_NAME",
        "USE_SHARED_PORT",
        "SHARED_PORT_PORT",
        "SEC_TOKEN_POOL_SIGNING_KEY_FILE",
        "SEC_PASSWORD_FILE",
        "SEC_TOKEN_SYSTEM_DIRECTORY",
        "START",
        "NUM_SLOTS_TYPE_1",
        "SLOT_TYPE_1",
        "SLOT_TYPE_1_PARTITIONABLE",
        "STARTD_ATTRS",
        "HeatGenServerId",
        "HeatGenGroup",
        "MACHINE_RESOURCE_INVENTORY_GPUs",
        "MAX_JOBS_RUNNING",
        "SECURITY_MODEL",
        "MAXJOBRETIREMENTTIME",
        "SEC_READ_AUTHENTICATION",
    ]
    names += [f"ALLOW_{level}" for level in ("ADVERTISE_STARTD", "ADVERTISE_MASTER",
                                             "ADMINISTRATOR", "DAEMON", "NEGOTIATOR",
                                             "ADVERTISE_SCHEDD", "CONFIG")]
    names += [f"SEC_DEFAULT_{k}" for k in ("AUTHENTICATION", "ENCRYPTION", "INTEGRITY")]
    names += [f"SEC_{level}_AUTHENTICATION_METHODS" for level in SECURITY_LEVELS]
    return names


def _our_config_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "etc/condor/config.d").iterdir() if "heatgen" in p.name)


def _assert_no_open_write(root: Path) -> None:
    for path in _our_config_files(root):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not re.match(r"\s*ALLOW_WRITE\s*=\s*\*\s*$", line), f"{path.name}: {line}"
            assert "CLAIMTOBE" not in line.upper() and "ANONYMOUS" not in line.upper(), line


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_htcondor_parses_the_master_configuration(
    example: Path, tmp_path: Path, handle: Recorder
) -> None:
    run = _run_setup(
        _cloud_config(example, MASTER_BOOT), MASTER_SCRIPT, tmp_path, _notify(handle.url)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    site = load_site(example)
    params = _htcondor_params(run.root, _param_names())
    assert (params["DAEMON_LIST"] or "").split()[:4] == [
        "MASTER",
        "COLLECTOR",
        "NEGOTIATOR",
        "SCHEDD",
    ]
    assert "STARTD" not in (params["DAEMON_LIST"] or "")
    assert params["COLLECTOR_NAME"] == POOL_NAME
    # security:recommended (24+) sets SECURITY_MODEL 24.0, 23.x's recommended_v9_0 sets 9.0.
    major = int(site.condor.version.partition(".")[0])
    assert params["SECURITY_MODEL"] == ("9.0" if major < 24 else "24.0")
    _check_security(params, run.root)
    if site.condor.extra_config:
        assert params["MAX_JOBS_RUNNING"] == "500"
    _assert_no_open_write(run.root)


@pytest.mark.parametrize("case", WORKER_CASES, ids=_case_id)
def test_htcondor_parses_the_worker_configuration(case: tuple[Path, str],
                                                  tmp_path: Path) -> None:
    example, boot = case
    run = _run_setup(_cloud_config(example, boot), WORKER_SCRIPT, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    site = load_site(example)
    group = next(g for g in site.groups if g.names.boot_file == boot)
    params = _htcondor_params(run.root, _param_names())
    assert (params["DAEMON_LIST"] or "").split() == ["MASTER", "STARTD"]
    _check_security(params, run.root)
    assert params["HeatGenServerId"] == f'"{SERVER_ID}"'
    assert "HeatGenServerId" in (params["STARTD_ATTRS"] or "")
    if site.condor.slots == "static":
        assert int(params["NUM_SLOTS_TYPE_1"] or "0") >= 1  # $(NUM_CPUS) of the test machine
        assert (params["SLOT_TYPE_1_PARTITIONABLE"] or "").lower() == "false"
        assert params["SLOT_TYPE_1"] == "cpus=1"
    else:
        assert params["NUM_SLOTS_TYPE_1"] == "1"
        assert (params["SLOT_TYPE_1_PARTITIONABLE"] or "").lower() == "true"
        assert params["SLOT_TYPE_1"] == "100%"
    if group.start is not None:
        assert params["START"] == group.start  # (the groups example has no condor.start)
    elif site.condor.start is not None:
        assert params["START"] == site.condor.start
    if group.names.single:
        assert params["HeatGenGroup"] is None
    else:
        # the group's name, advertised so that jobs can ask for it
        assert params["HeatGenGroup"] == f'"{group.name}"'
        assert "HeatGenGroup" in (params["STARTD_ATTRS"] or "")
    # HTCondor's GPU discovery (feature:GPUs) only on a group with GPUs
    discovery = params["MACHINE_RESOURCE_INVENTORY_GPUs"] or ""
    assert ("condor_gpu_discovery" in discovery) == bool(group.gpus), discovery
    assert params["MAXJOBRETIREMENTTIME"] == str(site.condor.retirement_time)
    _assert_no_open_write(run.root)


def test_htcondor_rejects_a_broken_configuration(tmp_path: Path) -> None:
    """The parser check has teeth: an unknown metaknob is an error, not a warning."""
    config_dir = tmp_path / "etc/condor/config.d"
    config_dir.mkdir(parents=True)
    (config_dir / "50-heatgen.conf").write_text("use role:NoSuchRole\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="rejected"):
        _htcondor_params(tmp_path, ["DAEMON_LIST"])


# --- JSON of the signal body -----------------------------------------------------------------


def _json_string_function() -> str:
    text = _cloud_config(_example("minimal"), MASTER_BOOT)
    script = _entry(text, MASTER_SCRIPT)["content"]
    match = re.search(r"^json_string\(\) \{\n.*?^\}\n", script, flags=re.DOTALL | re.MULTILINE)
    assert match is not None
    return match.group(0)


@settings(max_examples=60, deadline=None)
@example('dnf: "condor" not found \\ C:\\path\n\ttrailing newline\r\n')
@example("caf\u00e9 \u2018quoted\u2019 \x7f\x1b[0m")
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_json_string_escapes_any_reason(reason: str) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = _json_string_function() + 'json_string "$1"\n'
    result = subprocess.run(
        [bash, "-c", script, "json_string", reason],
        capture_output=True,
        check=False,
        env={"LC_ALL": "C.UTF-8", "PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0
    decoded = json.loads(result.stdout.decode("utf-8"))
    kept = "".join(c for c in reason if 0x20 <= ord(c) <= 0x7E or c in "\n\r\t")
    assert decoded == kept


# --- heatgen.render.payload -------------------------------------------------------------


def _site_data(**condor: Any) -> dict[str, Any]:
    data = yaml.safe_load(_example("minimal").read_text(encoding="utf-8"))
    data["condor"].update(condor)
    return dict(data)


def test_every_os_family_has_a_distribution() -> None:
    assert set(DISTRIBUTIONS) == set(OsFamily)
    for distribution in DISTRIBUTIONS.values():
        lines = "\n".join(distribution.commands("24.x"))
        assert "{" not in lines.replace("${root}", "").replace("${Status}", "")
        if distribution.repo_setup:
            assert "24.x" in lines


def test_repository_urls_follow_the_channel() -> None:
    el9 = "\n".join(DISTRIBUTIONS[OsFamily.EL9].commands("24.0"))
    assert (
        "https://htcss-downloads.chtc.wisc.edu/repo/24.0/htcondor-release-current.el9.noarch.rpm"
        in el9
    )
    noble = "\n".join(DISTRIBUTIONS[OsFamily.UBUNTU_2404].commands("24.x"))
    assert "https://htcss-downloads.chtc.wisc.edu/repo/keys/HTCondor-24.x-Key" in noble
    assert "https://htcss-downloads.chtc.wisc.edu/repo/ubuntu/24.x" in noble
    assert " noble main" in noble
    jammy = "\n".join(DISTRIBUTIONS[OsFamily.UBUNTU_2204].commands("24.0"))
    assert " jammy main" in jammy


@pytest.mark.parametrize(
    ("version", "glob"), [("24.0", "24.0.*"), ("24.x", "24.*"), ("25.0", "25.0.*")]
)
def test_version_glob(version: str, glob: str) -> None:
    assert version_glob(version) == glob


def test_master_and_workers_may_run_different_images() -> None:
    data = _site_data()
    data["workers"]["os"] = "ubuntu24.04"
    files = render_site(validate_site(data, "test")).files
    assert "dnf install -y condor" in files[MASTER_BOOT]
    assert "apt-get" not in files[MASTER_BOOT]
    assert " noble main" in files[WORKER_BOOT]
    assert "dnf" not in files[WORKER_BOOT]


def test_old_channels_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_site(_site_data(version="23.0"), "site.yaml")
    assert str(caught.value) == (
        "site.yaml: condor.version: must be 24.0 or newer: the boot payload relies on "
        "HTCondor 24's token-only security (the one exception is \"23.9\" with os: debian13, "
        "Debian 13's own HTCondor) (got '23.0')"
    )


@pytest.mark.parametrize(
    "condor",
    [
        {"extra_config": ["X = __HEATGEN_POOL_SECRET__"]},
        {"start": 'Owner == "__HEATGEN_MASTER_IP__"'},
    ],
)
def test_markers_in_user_text_are_refused(condor: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="must not contain '__HEATGEN_': Heat replaces it"):
        validate_site(_site_data(**condor), "site.yaml")


def test_rendering_is_deterministic() -> None:
    site = load_site(_example("manual"))
    assert render_site(site).files == render_site(site).files


def test_user_data_fits_nova_even_with_the_largest_user_text() -> None:
    """Nova takes at most 65535 bytes of base64 user data; Heat sends the substituted text."""
    long_notify = _notify("https://heat.example.org:8004/v1/" + "p" * 32 + "/stacks/" + "s" * 200)
    line = "X = " + "y" * 4000
    data = _site_data(extra_config=[line] * 5, start="TARGET.RequestMemory <= " + "9" * 3000)
    files = render_site(validate_site(data, "test")).files
    for name in CLOUD_CONFIGS:
        booted = _heat_substitute(files[name], long_notify)
        assert len(base64.b64encode(booted.encode("utf-8"))) <= 65535, name


def test_too_much_user_text_is_refused() -> None:
    data = _site_data(extra_config=["X = " + "y" * 4000] * 7)
    with pytest.raises(ConfigError) as caught:
        validate_site(data, "site.yaml")
    assert str(caught.value) == (
        "site.yaml: condor.extra_config: 28084 bytes of HTCondor configuration (with "
        "condor.start) do not fit the user data Nova accepts: at most 24576 (got list)")


# --- Debian 13, the security metaknob, the retirement time -----------------------------------


def test_debian13_installs_from_debians_own_archive() -> None:
    lines = "\n".join(DISTRIBUTIONS[OsFamily.DEBIAN_13].commands("23.9"))
    assert "://" not in lines and "sources.list" not in lines, "no external repository"
    assert "install --no-install-recommends condor nftables curl" in lines
    assert "-o DPkg::Lock::Timeout=600" in lines and "DEBIAN_FRONTEND=noninteractive" in lines
    files = _rendered(_example("debian13"))
    for name in CLOUD_CONFIGS:
        assert "htcss-downloads" not in files[name] and "dnf" not in files[name]
        assert "HTCondor 23.9 from Debian 13's own archive" in files[name]


@pytest.mark.parametrize(
    ("installed", "apt_calls"),
    [
        ("", ["update", "install --no-install-recommends condor nftables curl"]),
        ("condor", ["update", "install --no-install-recommends condor nftables curl"]),
        ("condor nftables curl", []),
    ],
    ids=["fresh-image", "condor-only", "image-with-htcondor"],
)
def test_debian13_install_is_idempotent_and_needs_no_network_when_installed(
    installed: str, apt_calls: list[str], tmp_path: Path, handle: Recorder
) -> None:
    env = {"STUB_DPKG_INSTALLED": installed}
    if not apt_calls:
        env["STUB_FAIL_apt_get"] = "E: Failed to fetch http://deb.debian.org/ (no network)"
    run = _run_setup(
        _cloud_config(_example("debian13"), MASTER_BOOT),
        MASTER_SCRIPT,
        tmp_path,
        _notify(handle.url),
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    apt = [c for c in run.calls() if c.startswith("apt-get")]
    prefix = "apt-get -q -y -o DPkg::Lock::Timeout=600 "
    assert apt == [prefix + call for call in apt_calls]
    assert "dpkg-query -W --showformat=${Status}\\n condor nftables curl" in run.calls()
    assert handle.bodies()[-1]["status"] == "SUCCESS"
    assert "condor_version=23.9.3" in handle.bodies()[-1]["data"]


@pytest.mark.parametrize(
    ("version", "knob"),
    [("23.9", "recommended_v9_0"), ("24.0", "recommended"), ("24.x", "recommended"),
     ("25.0", "recommended")],
)
def test_security_metaknob_follows_the_channel(version: str, knob: str) -> None:
    assert security_metaknob(version) == knob
    data = _site_data(version=version)
    if version == "23.9":
        data["master"]["os"] = data["workers"]["os"] = "debian13"
    site = validate_site(data, "test")
    assert payload_context(site)["payload"]["security_metaknob"] == knob
    files = render_site(site).files
    for name in CLOUD_CONFIGS:
        lines = [line.strip() for line in files[name].splitlines()]
        assert [line for line in lines if line.startswith("use security:")] == [
            f"use security:{knob}"
        ]


@pytest.mark.parametrize(("stem", "model"), [("minimal", "24.0"), ("debian13", "9.0")])
def test_htcondor_parses_both_security_metaknobs(
    stem: str, model: str, tmp_path: Path, handle: Recorder
) -> None:
    """HTCondor's parser knows both templates and sets the security model each promises."""
    for name, script in ((MASTER_BOOT, MASTER_SCRIPT), (WORKER_BOOT, WORKER_SCRIPT)):
        base = tmp_path / name
        base.mkdir()
        text = _cloud_config(_example(stem), name)
        run = _run_setup(text, script, base, _notify(handle.url))
        assert run.returncode == 0, run.stdout + run.stderr
        params = _htcondor_params(run.root, _param_names())
        assert params["SECURITY_MODEL"] == model, name
        _check_security(params, run.root)


def test_workers_let_running_jobs_retire_before_a_drain_evicts_them() -> None:
    files = render_site(validate_site(_site_data(retirement_time=3600), "test")).files
    execute = _entry(files[WORKER_BOOT], "/etc/condor/config.d/51-heatgen-execute.conf")
    lines = execute["content"].splitlines()
    assert "MAXJOBRETIREMENTTIME = 3600" in lines
    assert any("graceful drain" in line for line in lines if line.startswith("#"))
    assert "MAXJOBRETIREMENTTIME" not in files[MASTER_BOOT]
    default = render_site(validate_site(_site_data(), "test")).files[WORKER_BOOT]
    assert "MAXJOBRETIREMENTTIME = 86400" in default
