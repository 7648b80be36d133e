"""The event-built YAML reader reads a document as SafeLoader does, or hands it back."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from flashback_contract.mock.seed import SeedError, demo_seed_text, parse_seed
from flashback_contract.mock.seed_yaml import (
    AliasFound,
    SafeLoader,
    TooDeep,
    Unsupported,
    build,
)

SCALARS = """
plain: text
quoted-number: "123"
single-quoted: '2026-01-01T00:00:00Z'
int: 42
negative: -7
hex: 0x1F
octal: 017
underscored: 1_000
sexagesimal: 190:20:30
float: 3.25
exponent: 6.8523015e+5
infinity: .inf
negative-infinity: -.Inf
yes-bool: yes
off-bool: off
true-bool: True
tilde: ~
null-word: null
empty:
date: 2026-02-01
datetime: 2026-02-01T09:00:00Z
spaced-datetime: 2001-12-14 21:59:43.10 -5
tagged-str: !!str 123
tagged-int: !!int "5"
tagged-float: !!float "1"
tagged-bool: !!bool "true"
tagged-null: !!null ""
non-specific: ! 12
binary: !!binary aGVsbG8=
block: |
  two
  lines
folded: >
  folded
  text
unicode: "caf\\u00e9 ✓"
7: an int key
2026-03-01: a date key
true: a bool key
anchored: &a {x: 1}
anchored-list: &b [1, 2]
map-tagged: !!map {a: 1}
seq-tagged: !!seq [1]
nested: {a: [1, {b: [null, yes, '1']}], c: []}
flow-seq: [a, 'b', 1.5, ~]
"""


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)


@pytest.mark.parametrize(
    "text",
    [
        demo_seed_text(),
        SCALARS,
        "",
        "# only a comment\n",
        "just a scalar",
        "- a\n- 1\n",
        "--- {a: 1}\n...\n",
        "%YAML 1.1\n--- [1]\n",
    ],
    ids=["demo seed", "scalars", "empty", "comment", "scalar", "list", "markers", "directive"],
)
def test_a_document_builds_as_safe_loader_reads_it(text: str) -> None:
    assert build(text, max_depth=32).value == safe_load(text)
    assert build(text.encode("utf-8"), max_depth=32).value == safe_load(text)


def test_scalars_have_safe_loader_types_not_only_equal_values() -> None:
    built, expected = build(SCALARS, max_depth=32).value, safe_load(SCALARS)
    assert list(built) == list(expected)
    for key, value in expected.items():
        assert type(built[key]) is type(value), key
    assert built["yes-bool"] is True and built["tilde"] is None and built["hex"] == 31


def test_nan_reads_as_nan() -> None:
    assert math.isnan(build("x: .nan", max_depth=4).value["x"])


def test_a_document_with_dates_says_so_and_one_without_does_not() -> None:
    assert build("at: 2026-02-01T09:00:00Z", max_depth=4).dates
    assert not build("at: '2026-02-01T09:00:00Z'", max_depth=4).dates


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {x: 1}\nmerged:\n  <<: {y: 2}\n  z: 3\n",
        "items: !!set {a, b}",
        "ordered: !!omap [{a: 1}, {b: 2}]",
        "pairs: !!pairs [{a: 1}]",
        "? [a, b]\n: complex key\n",
        "--- 1\n--- 2\n",
        "x: !custom thing",
        "x: =",
    ],
    ids=["merge", "set", "omap", "pairs", "complex key", "two documents", "local tag", "value"],
)
def test_yaml_beyond_plain_trees_is_left_to_pyyaml(text: str) -> None:
    with pytest.raises(Unsupported):
        build(text, max_depth=32)


def test_a_merge_key_still_reads_through_pyyaml() -> None:
    text = (
        "organizations:\n"
        "  - <<: {name: Merged}\n"
        "    id: org-m\n"
        "users: [{id: u, org: org-m, role: OWNER}]\n"
    )
    assert parse_seed(text)["organizations"] == [{"id": "org-m", "name": "Merged"}]


def test_an_alias_is_found() -> None:
    with pytest.raises(AliasFound):
        build("a: &x 1\nb: *x\n", max_depth=4)


def test_nesting_beyond_the_limit_is_refused() -> None:
    assert build("a: [[[1]]]", max_depth=4).value == {"a": [[[1]]]}
    with pytest.raises(TooDeep):
        build("a: [[[[1]]]]", max_depth=4)
    with pytest.raises(SeedError, match="nested too deeply"):
        parse_seed("users: " + "[" * 40 + "]" * 40)


def test_text_that_is_not_yaml_raises_pyyamls_error() -> None:
    with pytest.raises(yaml.YAMLError):
        build("a: [1, 2", max_depth=4)
    with pytest.raises(SeedError, match="not YAML or JSON"):
        parse_seed("a: [1, 2")


def test_a_large_seed_reads_as_safe_loader_reads_it() -> None:
    lines = ["organizations:"]
    lines += [f"- {{id: org-{n}, name: 'Org {n}'}}" for n in range(200)]
    lines.append("aiApiKeys:")
    lines += [
        f"- id: key-{n}\n  createdAt: 2026-02-01T09:{n % 60:02d}:00Z\n  n: {n}\n  ok: yes"
        for n in range(2000)
    ]
    text = "\n".join(lines) + "\n"
    built = build(text, max_depth=32)
    assert built.value == safe_load(text)
    assert built.dates


@pytest.mark.parametrize(
    ("text", "named"),
    [("a: 2026-13-45", "'2026-13-45' is not a valid timestamp"), ("a: !!int x", "'x' is not")],
)
def test_a_scalar_that_cannot_be_its_type_is_a_yaml_error_with_its_place(
    text: str, named: str
) -> None:
    with pytest.raises(yaml.YAMLError, match=named) as raised:
        build(text, max_depth=4)
    assert "line 1, column 4" in str(raised.value)
