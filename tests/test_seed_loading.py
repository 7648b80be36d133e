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


def test_seeded_ai_keys_each_store_a_distinct_random_hash() -> None:
    from flashback_contract.mock.seed import load_seed
    from flashback_contract.store import open_store

    document = parse_seed(demo_seed_text())
    repo = document["aiApiKeys"][0]["repo"]
    hashes = []
    for _ in range(2):
        store = open_store("memory://")
        with store.transaction() as uow:
            load_seed(uow, document)
        with store.transaction() as uow:
            hashes += [key.secret_sha256 for key in uow.ai_keys(repo)]
    assert len(hashes) >= 4
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)
    assert len(set(hashes)) == len(hashes)  # within a seed and across two loads of it
