"""Seed reading: JSON through the JSON parser, YAML through libyaml, one validation for both."""

from __future__ import annotations

import json

import pytest
import yaml

from flashback_contract.mock.seed import SeedError, demo_seed_text, parse_seed


def test_a_json_seed_reads_as_its_yaml_twin() -> None:
    from_yaml = parse_seed(demo_seed_text())
    assert parse_seed(json.dumps(from_yaml)) == from_yaml


def test_an_invalid_json_seed_is_explained_as_its_yaml_twin_is() -> None:
    document = {"organizations": [{"id": "org-a", "name": "A"}], "users": [{"id": "u"}]}
    with pytest.raises(SeedError) as as_json:
        parse_seed(json.dumps(document))
    with pytest.raises(SeedError) as as_yaml:
        parse_seed(yaml.safe_dump(document))
    assert str(as_json.value) == str(as_yaml.value)
    assert "users[0].org: required" in str(as_json.value)


def test_yaml_in_flow_style_is_still_yaml() -> None:
    text = "{organizations: [{id: org-a, name: A}], users: [{id: u, org: org-a, role: OWNER}]}"
    assert parse_seed(text)["users"][0]["role"] == "OWNER"
