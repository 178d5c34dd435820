"""The fast check of a valid config (heatgen.config.check) against the pydantic reference.

For every example, every config the other tests' parameters and the fuzz strategies hold, and
thousands of seeded mutations of the examples (types, bounds at and across each limit the
JSON Schema states, unknown keys, nulls, bools for ints, floats for ints, patterns, sections
missing, worker_groups shapes, the cross-field rules): the fast check accepts a config exactly
when the pydantic path does, and then builds the very same site, field by field, type by type.
A render of a valid example imports no pydantic.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import random
import subprocess
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from heatgen.config import validate
from heatgen.config.check import check_site
from heatgen.config.loader import parse_yaml
from heatgen.config.model import MARKER_PREFIX, USER_TEXT_BUDGET
from heatgen.errors import ConfigError

from . import test_config, test_fuzz_config, test_groups, test_payload
from .conftest import EXAMPLES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
BASES = {path.stem: parse_yaml(path.read_text(encoding="utf-8"), str(path))
         for path in EXAMPLE_FILES}
MUTATIONS = 4000
SEED = 20170301


def reference(data: Any) -> Any:
    try:
        return validate.validate_site(data, "site.yaml")
    except ConfigError:
        return None


def shape(value: Any) -> Any:
    """A value with its type at every level, so that 50 and 50.0 (or 1 and True) differ."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,
                tuple((f.name, shape(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(shape(item) for item in value))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, Enum):
        return (type(value).__name__, value.name)
    return (type(value).__name__, value)


def agree(data: Any) -> bool:
    """The two paths agree on ``data``; True if both accept it."""
    fast, slow = check_site(copy.deepcopy(data)), reference(copy.deepcopy(data))
    assert (fast is not None) == (slow is not None), (
        f"fast {'accepts' if fast is not None else 'refuses'}, pydantic "
        f"{'accepts' if slow is not None else 'refuses'}: {data!r:.2000}")
    if fast is not None:
        assert shape(fast) == shape(slow), data
        assert fast == slow
        assert shape(fast.groups) == shape(slow.groups)
    return fast is not None


# --- the examples and the other tests' configs ------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.stem for p in EXAMPLE_FILES])
def test_every_example_passes_the_fast_check_as_the_reference_builds_it(path: Path) -> None:
    assert agree(BASES[path.stem])


def _parsed(value: Any) -> Iterator[Any]:
    """The configs in a test parameter: a mapping with a site, or YAML text of one."""
    if isinstance(value, dict) and "site" in value:
        yield value
    elif isinstance(value, str) and "site:" in value:
        try:
            data = parse_yaml(value, "site.yaml")
        except ConfigError:
            return
        yield data
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _parsed(item)


def _parametrized_configs() -> list[Any]:
    found = []
    for module in (test_config, test_groups, test_payload, test_fuzz_config):
        for _, function in inspect.getmembers(module, inspect.isfunction):
            for mark in getattr(function, "pytestmark", []):
                if mark.name == "parametrize":
                    found += list(_parsed(list(mark.args[1])))
        for name, value in vars(module).items():
            if name.isupper():
                found += list(_parsed(value))
    return found


PARAMETRIZED = _parametrized_configs()


def test_the_other_tests_configs_get_the_same_verdict() -> None:
    assert len(PARAMETRIZED) >= 20
    for data in PARAMETRIZED:
        agree(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck),
          database=None, derandomize=True)
@given(test_fuzz_config.documents)
def test_the_fuzz_documents_get_the_same_verdict(text: str) -> None:
    try:
        data = parse_yaml(text, "site.yaml")
    except ConfigError:
        return
    agree(data)


# --- seeded mutations -------------------------------------------------------------------------

SCHEMA = validate.site_json_schema()


def _section_schema(name: str) -> dict[str, Any]:
    return SCHEMA if name == "Site" else SCHEMA["$defs"][name]  # type: ignore[no-any-return]


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for branch in prop.get("anyOf", [prop]):
        if "$ref" in branch:
            branch = SCHEMA["$defs"][branch["$ref"].rsplit("/", 1)[1]]
        out.append(branch)
    return out


ODD = [None, True, False, 0, 1, -1, 0.0, 1.0, 1.5, -0.5, "", "x", "1", "1.0", "true", [], {},
       ["x"], {"x": 1}, 10**30, float("inf"), float("nan"), "a\nb", MARKER_PREFIX + "X",
       "é", "\u00e9\u0301", "ß" * 3]
TEXTS = ["grid", "a", "A.b-c_d", "9grid", "-x", "x y", "g" * 19, "g" * 20, "g" * 21, "g" * 60,
         "g" * 61, "g" * 63, "g" * 64, "g" * 255, "g" * 256, "cpu", "gpu-2", "Cpu", "a--", "x\n",
         "x\n\n", "ä", "24.0", "24.x", "23.9", "25.1", "9.0", "23.10", "0024.0", "24", "x.24",
         "24.0\n", "99999999999999999999.0", "2021-04-16", "2016-10-14", "2015-10-15",
         "0.0.0.0/0", "10.0.0.0/8", "10.0.0.1/8", "::/0", "2001:db8::/32", "10.0.0.0/33",
         " 10.0.0.0/8", "192.0.2.0/24", "el9", "EL9", "debian13", "ubuntu22.04", "ubuntu24.04",
         "gnocchi", "prometheus", "none", "alarm", "guarded", "off", "cpu", "queue", "static",
         "partitionable", "TARGET.RequestGpus >= 1", "x" * 4096, "x" * 4097]


def _boundaries(branch: dict[str, Any]) -> list[Any]:
    values: list[Any] = []
    kind = branch.get("type")
    if "enum" in branch:
        values += branch["enum"] + [str(v).upper() for v in branch["enum"]]
    if "const" in branch:
        values.append(branch["const"])
    for key, steps in (("minimum", (-1, 0, 1)), ("maximum", (-1, 0, 1)),
                       ("exclusiveMinimum", (0, 1)), ("exclusiveMaximum", (-1, 0))):
        if key in branch:
            edge = branch[key]
            for step in steps:
                values += [edge + step, float(edge + step)]
            if kind == "number":
                values += [edge + 0.001, edge - 0.001, edge + 1e-12]
    for key in ("minLength", "maxLength"):
        if key in branch:
            size = branch[key]
            values += ["a" * max(size - 1, 0), "a" * size, "a" * (size + 1)]
    if kind == "array":
        values += [["KNOB = 1"], ["KNOB = 1", ""], [""], ["x" * 4096], ["x" * 4097],
                   ["a\nb"], [MARKER_PREFIX], ["x" * 4000] * 6, ["x" * 3000] * 8, "KNOB = 1",
                   [1], [None]]
    return values


def _candidate(prop: dict[str, Any], rng: random.Random) -> Any:
    """A value at or across one of the field's limits, most often, else an odd one."""
    edges = [value for branch in _branches(prop) for value in _boundaries(branch)]
    if edges and rng.random() < 0.7:
        return copy.deepcopy(rng.choice(edges))
    return copy.deepcopy(rng.choice(ODD + TEXTS))


def _sections(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """(path, schema name) of every section in ``data``, and of sections it could hold."""
    found: list[tuple[tuple[Any, ...], str]] = [((), "Site")]
    for key, name in (("network", "Network"), ("master", "Master"), ("workers", "Workers"),
                      ("autoscaling", "Autoscaling"), ("condor", "Condor")):
        if isinstance(data.get(key), dict) or key == "autoscaling":
            found.append(((key,), name))
    groups = data.get("worker_groups")
    if isinstance(groups, list):
        for index, group in enumerate(groups):
            if isinstance(group, dict):
                found += [((("worker_groups", index)), "WorkerGroup"),
                          (("worker_groups", index, "autoscaling"), "GroupAutoscaling")]
    return found


def _node(data: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    node: Any = data
    for part in path:
        keep = dict | list if part == "worker_groups" else dict
        if isinstance(node, dict) and not isinstance(node.get(part), keep):
            node[part] = {}  # a section an earlier mutation replaced: a mapping again
        node = node[part]
    return node  # type: ignore[no-any-return]


def _as_groups(data: dict[str, Any], rng: random.Random) -> None:
    """``workers`` as ``worker_groups`` of one to a few groups."""
    workers = data.pop("workers", None)
    if not isinstance(workers, dict):
        return
    count = rng.choice([1, 1, 2, 3, 20, 21])
    data["worker_groups"] = [dict(workers, name=f"g{i}") for i in range(count)]


def _mutate(data: dict[str, Any], rng: random.Random) -> None:
    kind = rng.choices(["field", "delete", "unknown", "section", "groups", "cross", "text"],
                       weights=[10, 2, 1, 1, 2, 3, 1])[0]
    sections = _sections(data)
    path, name = rng.choice(sections)
    properties = _section_schema(name)["properties"]
    if kind == "field":
        field = rng.choice(sorted(properties))
        _node(data, path)[field] = _candidate(properties[field], rng)
    elif kind == "delete":
        node = _node(data, path)
        if node:
            del node[rng.choice(sorted(node))]
    elif kind == "unknown":
        _node(data, path)[rng.choice(["extra", "vcpu", "Site", "1", "wait timeout"])] = 1
    elif kind == "section":
        key = rng.choice(["network", "master", "workers", "autoscaling", "condor",
                          "worker_groups"])
        if rng.random() < 0.5:
            data.pop(key, None)
        else:
            data[key] = rng.choice([None, [], {}, "x", 1, [{}]])
    elif kind == "groups":
        if "workers" in data:
            _as_groups(data, rng)
        elif isinstance(data.get("worker_groups"), list) and data["worker_groups"]:
            groups = data["worker_groups"]
            choice = rng.randrange(5)
            if choice == 0:  # a duplicate name
                groups.append(copy.deepcopy(rng.choice(groups)))
            elif choice == 1:
                groups.pop(rng.randrange(len(groups)))
            elif choice == 2:
                data["workers"] = {k: v for k, v in groups[0].items()
                                   if k in ("image", "flavor", "os", "vcpus", "min", "max",
                                            "desired")}
            elif choice == 3:
                groups.append(None)
            else:
                group = rng.choice(groups)
                if isinstance(group, dict):
                    group["autoscaling"] = rng.choice([None, {}, "x", {"cpu_high": None},
                                                       {"cpu_low": None, "cpu_high": 5}])
    elif kind == "cross":
        _cross(data, rng)
    else:
        condor = data.get("condor")
        if isinstance(condor, dict):
            size = rng.choice([0, 1, 100, 4000, 4096, 4097])
            condor[rng.choice(["start", "extra_config"])] = (
                "x" * size if rng.random() < 0.5 else ["y" * size] * rng.randint(1, 7))


def _cross(data: dict[str, Any], rng: random.Random) -> None:
    """Values near the rules that span fields: capacity, thresholds, os and version, the user
    data budget."""
    choice = rng.randrange(5)
    groups = data.get("worker_groups")
    nodes = [n for n in [data.get("workers"), *(groups if isinstance(groups, list) else [])]
             if isinstance(n, dict)]
    if choice == 0 and nodes:
        node = rng.choice(nodes)
        for key in rng.sample(["min", "max", "desired"], rng.randint(1, 3)):
            node[key] = rng.choice([0, 1, 2, 3, 5, 7, 20, 10000])
    elif choice == 1:
        scaling = rng.choice([_node(data, ("autoscaling",)),
                              *(_node(n, ("autoscaling",)) for n in nodes)])
        for key in rng.sample(["cpu_low", "cpu_high"], rng.randint(1, 2)):
            scaling[key] = rng.choice([5, 10, 10.0, 20, 49.5, 50, 50.0, 60, 90, 100, None])
    elif choice == 2:
        system = rng.choice(["el9", "debian13", "ubuntu24.04"])
        for node in [data.get("master"), *nodes]:
            if isinstance(node, dict) and rng.random() < 0.8:
                node["os"] = system
        condor = data.get("condor")
        if isinstance(condor, dict) and rng.random() < 0.7:
            condor["version"] = rng.choice(["23.9", "24.0", "24.x", "23.0", "25.0"])
    elif choice == 3 and nodes:
        rng.choice(nodes)["start"] = rng.choice(
            ["TARGET.x == 1", "x" * 4096, "x" * 4097, "", "a\nb", None])
        condor = data.get("condor")
        if isinstance(condor, dict):
            condor["extra_config"] = ["z" * 4000] * rng.choice([0, 4, 5, 6])
            condor["start"] = rng.choice([None, "x" * 600, "x" * 4096])
    else:
        budget_line = "k" * (USER_TEXT_BUDGET // 6 - 7)
        condor = data.get("condor")
        if isinstance(condor, dict):
            condor["extra_config"] = [budget_line] * rng.choice([5, 6]) + \
                rng.choice([[], ["k" * rng.choice([1, 4, 5, 6, 7, 8])]])


def mutations(count: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    names = sorted(BASES)
    for _ in range(count):
        data = copy.deepcopy(BASES[rng.choice(names)])
        for _ in range(rng.choice([1, 1, 1, 1, 2, 3])):
            _mutate(data, rng)
        yield data


def test_seeded_mutations_get_the_same_verdict_and_site() -> None:
    accepted = sum(agree(data) for data in mutations(MUTATIONS, SEED))
    # both verdicts in good measure: the comparison is of valid sites as well as of refusals
    assert MUTATIONS * 0.2 < accepted < MUTATIONS * 0.8, accepted


@pytest.mark.slow
def test_seeded_mutations_get_the_same_verdict_and_site_50000() -> None:
    for seed in range(5):
        for data in mutations(10_000, SEED + 1 + seed):
            agree(data)


def test_every_limit_of_every_field_one_at_a_time() -> None:
    """Each field of each section of three examples, set in turn to each value at and across
    the limits its JSON Schema states, and to null, a bool, a float and a string."""
    tried = accepted = 0
    for base in ("thesis", "groups", "minimal"):
        for path, name in _sections(BASES[base]):
            properties = _section_schema(name)["properties"]
            for field in sorted(properties):
                edges = [v for b in _branches(properties[field]) for v in _boundaries(b)]
                for value in [*edges, None, True, 1.0, "1", "x", "a\nb", MARKER_PREFIX]:
                    data = copy.deepcopy(BASES[base])
                    _node(data, path)[field] = copy.deepcopy(value)
                    tried += 1
                    accepted += agree(data)
    assert tried > 1500 and accepted > 300, (tried, accepted)


def test_the_user_data_budget_at_its_edge() -> None:
    """condor.start and condor.extra_config, and a group's start beside them, at one byte
    under, at and one over what the user data holds (7 bytes of each text are the payload's;
    an 'é' is two bytes)."""
    for start in (None, "", "s", "é"):
        for group_start in (None, "g" * 10, "é" * 10):
            for slack in (-1, 0, 1):
                for unit in ("k", "é"):
                    data = copy.deepcopy(BASES["groups"])
                    condor, groups = data["condor"], data["worker_groups"]
                    if start is not None:
                        condor["start"] = start
                    own = len((start or "").encode()) + 7
                    beside = len(group_start.encode()) + 7 if group_start else 0
                    room = USER_TEXT_BUDGET - own - beside + slack
                    # lines that fill the room (each 7 bytes more): the last one byte-exact
                    full = unit * (4096 // len(unit.encode()))
                    count = room // (4096 + 7)
                    rest = room - count * (4096 + 7) - 7
                    assert 0 <= rest <= 4096
                    condor["extra_config"] = [full] * count + ["k" * rest]
                    groups[-1]["start"] = group_start
                    agree(data)
                    for group in groups:
                        group.pop("start", None)
                    agree(data)


def test_a_yaml_round_trip_of_a_mutation_gets_the_same_verdict() -> None:
    """Through YAML text too, as `heatgen render` reads it."""
    for data in mutations(300, SEED + 100):
        try:
            text = yaml.safe_dump(data, allow_unicode=True)
        except yaml.YAMLError:
            continue
        agree(parse_yaml(text, "site.yaml"))


# --- a valid config's render imports no pydantic ----------------------------------------------

RENDER = """
import contextlib, io, json, sys
from heatgen.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["render", sys.argv[1], "-o", sys.argv[2]])
print(json.dumps({"code": code, "pydantic": sorted(m for m in sys.modules
                                                   if m.split(".")[0] in ("pydantic",
                                                                          "pydantic_core")
                                                   or m == "heatgen.config.schema")}))
"""


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.stem for p in EXAMPLE_FILES])
def test_a_render_of_a_valid_example_imports_no_pydantic(path: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", RENDER, str(path), str(tmp_path / "out")],
                          capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(done.stdout) == {"code": 0, "pydantic": []}


def test_a_render_of_an_invalid_config_still_names_the_problem(tmp_path: Path) -> None:
    text = (EXAMPLES / "minimal.yaml").read_text(encoding="utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(text.replace("  vcpus: 1", "  vcpus: 1.0"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "heatgen", "render", str(site), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"{site}: workers.vcpus: must be a valid integer (got 1.0)\n"


def test_extra_config_of_a_number_beside_worker_groups_is_named_not_a_traceback() -> None:
    data = copy.deepcopy(BASES["groups"])
    data["condor"]["extra_config"] = 1
    with pytest.raises(ConfigError) as caught:
        validate.validate_site(data, "site.yaml")
    assert caught.value.problems == ["condor.extra_config: must be a valid list (got 1)"]
