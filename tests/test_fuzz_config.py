"""Property-based fuzzing of the site config loader through `heatgen render`.

Every generated document is a broken site config: a valid one (examples/thesis.yaml) with one
mutation that makes it invalid by construction (a wrong type, a number out of range or too
long to convert, unicode where a name pattern rules, an unknown key, nesting past the limit,
a duplicate key, a Python tag, an alias bomb, a non-mapping document, bytes that are not
UTF-8). The properties: exit code 2, no traceback, every message line names the file and a
field or a line, and nothing is written.

The default run checks ``FUZZ_EXAMPLES`` (1,000) documents; the ``slow`` run 10,000.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import heatgen.cli
from heatgen.cli import main

REPO = Path(__file__).resolve().parent.parent
THESIS = yaml.safe_load((REPO / "examples" / "thesis.yaml").read_text(encoding="utf-8"))
FUZZ_EXAMPLES = 1_000
FUZZ_EXAMPLES_SLOW = 10_000

# A message line: FILE: then a field path or a line (or, for the document as a whole, what
# is wrong with it).
SEGMENT = r"(\[\d+\]|\[[\'\"].*?\])"  # an index, or an odd key quoted (maybe cut short)
FIELD = rf"([A-Za-z_]\w*|{SEGMENT})(\.[A-Za-z_]\w*|{SEGMENT})*"
MESSAGE = re.compile(
    rf"^(?P<file>\S+\.yaml): (line \d+, column \d+: |{FIELD}: |the file must hold a mapping"
    r"|not UTF-8 text \(byte \d+\)|file is larger than)"
)


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _mappings(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if not isinstance(data, dict):
        return []
    return [path, *(p for k, v in data.items() for p in _mappings(v, (*path, k)))]


LEAVES = _leaves(THESIS)
MAPPINGS = _mappings(THESIS)
PATTERN_FIELDS = [("site",), ("condor", "pool_name")]


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    import copy

    out = copy.deepcopy(data)
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


INT_LEAVES = [p for p in LEAVES if type(_get(THESIS, p)) is int and p[-1] != "min"]
STR_LEAVES = [p for p in LEAVES if isinstance(_get(THESIS, p), str)]


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# --------------------------------------------------------------------------- mutations

wrong_containers = st.one_of(
    st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=3),
    st.lists(st.integers(), min_size=1, max_size=3).map(lambda v: [{"x": v}]),
)


@st.composite
def wrong_type(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(LEAVES))
    return _dump(_set(THESIS, path, draw(wrong_containers)))


@st.composite
def huge_number(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(INT_LEAVES))
    digits = draw(st.integers(min_value=6, max_value=6000))
    sign = draw(st.sampled_from(["", "-"]))
    text = _dump(_set(THESIS, path, "__HUGE__"))
    form = draw(st.sampled_from(["dec", "hex", "float"]))
    number = {"dec": sign + "9" * digits, "hex": "0x" + "f" * digits,
              "float": f"{sign}1.5e{digits}"}[form]
    return text.replace("__HUGE__", number, 1)


@st.composite
def unicode_name(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(PATTERN_FIELDS))
    head = draw(st.text(max_size=10))
    odd = draw(st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF,
                             blacklist_categories=("Cs",)))
    return _dump(_set(THESIS, path, head + odd + draw(st.text(max_size=10))))


@st.composite
def unknown_key(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(MAPPINGS))
    target = _get(THESIS, path)
    key = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in target))
    return _dump(_set(THESIS, (*path, key), draw(st.integers() | st.text(max_size=10)))
                 if path else {**THESIS, key: 1})


@st.composite
def missing_key(draw: st.DrawFn) -> str:
    required = [("site",), ("keypair",), ("network",), ("master",), ("workers",), ("condor",),
                ("network", "private_network"), ("workers", "vcpus"), ("master", "image"),
                ("condor", "pool_name")]
    path = draw(st.sampled_from(required))
    import copy

    data = copy.deepcopy(THESIS)
    del _get(data, path[:-1])[path[-1]]
    return _dump(data)


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=40, max_value=5000))
    path = draw(st.sampled_from(LEAVES))
    flow = draw(st.booleans())
    nested = "[" * depth + "1" + "]" * depth if flow else \
        "{a: " * depth + "1" + "}" * depth
    return _dump(_set(THESIS, path, "__DEEP__")).replace("__DEEP__", nested, 1)


@st.composite
def duplicate_key(draw: st.DrawFn) -> str:
    text = _dump(THESIS)
    key = draw(st.sampled_from([k for k in THESIS if not isinstance(THESIS[k], dict)]))
    return text + f"{key}: {THESIS[key]!s}\n"


@st.composite
def python_tag(draw: st.DrawFn) -> str:
    tag = draw(st.sampled_from([
        "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
        "!!python/object:__main__.X {}", "!!python/tuple [1, 2]", "!!python/module:os",
        "!<tag:yaml.org,2002:python/object/new:os.system> ['true']", "!custom 1",
    ]))
    path = draw(st.sampled_from(LEAVES))
    return _dump(_set(THESIS, path, "__TAG__")).replace("'__TAG__'", tag, 1).replace(
        "__TAG__", tag, 1)


@st.composite
def alias_bomb(draw: st.DrawFn) -> str:
    levels = draw(st.integers(min_value=3, max_value=12))
    width = draw(st.integers(min_value=5, max_value=12))
    lines = ["a0: &a0 [lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return _dump(THESIS) + "\n".join(lines) + "\n"


@st.composite
def not_a_mapping(draw: st.DrawFn) -> str:
    value = draw(st.one_of(st.integers(), st.text(max_size=20), st.lists(st.integers()),
                           st.just(None), st.booleans()))
    return _dump(value)


@st.composite
def broken_yaml(draw: st.DrawFn) -> str:
    text = _dump(THESIS)
    junk = draw(st.sampled_from(["\t- : [", "{{", "key: [1, 2", ": : :", "\"unterminated",
                                 "- a\nb: c", "&a &b x", "*undefined"]))
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    line_start = text.rfind("\n", 0, cut) + 1
    return text[:line_start] + junk + "\n" + text[line_start:]


documents = st.one_of(
    wrong_type(), huge_number(), unicode_name(), unknown_key(), missing_key(), deep_nesting(),
    duplicate_key(), python_tag(), alias_bomb(), not_a_mapping(), broken_yaml(),
)


def _not_utf8() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=1, max_size=200).filter(_bad_utf8).map(
        lambda b: _dump(THESIS).encode() + b)


def _bad_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


inputs = st.one_of(documents.map(lambda t: t.encode("utf-8")), _not_utf8())


# --------------------------------------------------------------------------- the property


# heatgen's argument parser, built once for all documents (building it is about 7 ms, as much
# as the rest of a rejected render): argv is the same for each, and parsing leaves the parser
# as it was.
_PARSER = functools.cache(heatgen.cli._build_parser)


def check_rejected(data: bytes) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="heatgen-fuzz-"))
    try:
        site = workdir / "site.yaml"
        site.write_bytes(data)
        out = workdir / "out"
        stdout, stderr = io.StringIO(), io.StringIO()
        with (contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr),
              mock.patch.object(heatgen.cli, "_build_parser", _PARSER)):
            code = main(["render", str(site), "-o", str(out)])
        err = stderr.getvalue()
        assert "Traceback" not in err
        assert code == 2, (code, err, data[:300])
        lines = err.splitlines()
        assert lines, data[:300]
        for line in lines:
            assert MESSAGE.match(line), (line, data[:300])
        assert stdout.getvalue() == ""
        assert not out.exists() or not any(out.iterdir())
        assert sorted(p.name for p in workdir.iterdir()) == ["site.yaml"]
    finally:
        shutil.rmtree(workdir)


FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None,
                     derandomize=True)


@settings(max_examples=FUZZ_EXAMPLES, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(inputs)
def test_broken_configs_exit_2_naming_a_field_or_line(data: bytes) -> None:
    check_rejected(data)


@pytest.mark.slow
def test_broken_configs_exit_2_naming_a_field_or_line_10000() -> None:
    @settings(max_examples=FUZZ_EXAMPLES_SLOW, **FUZZ_SETTINGS)  # type: ignore[arg-type]
    @given(inputs)
    def run(data: bytes) -> None:
        check_rejected(data)

    run()


def test_the_unmutated_base_is_valid(tmp_path: Path) -> None:
    """The mutations start from a valid config, so each one is what breaks it."""
    site = tmp_path / "site.yaml"
    site.write_text(_dump(THESIS), encoding="utf-8")
    assert main(["render", str(site), "-o", str(tmp_path / "out")]) == 0


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_rejected_fast_in_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "laughs.yaml"
    site.write_text(BILLION_LAUGHS, encoding="utf-8")
    tracemalloc.start()
    started = time.monotonic()
    try:
        code = main(["render", str(site), "-o", str(tmp_path / "out")])
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2
    assert re.match(rf"^{re.escape(str(site))}: line \d+, column \d+: invalid YAML: more than "
                    r"\d+ aliases", err), err
    assert elapsed < 1.0
    assert peak < 20 * 1024 * 1024
    assert not (tmp_path / "out").exists()
