"""The demo fixture (ids frontends rely on), custom seed files, and persistence across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flashback_contract import Settings, create_app
from flashback_contract.domain import Role
from flashback_contract.mock.seed import SeedError, seed_if_empty
from flashback_contract.store import MemoryStore, Store, open_store
from tests.conftest import OWNER, bearer

DEMO_PRIVATE_KEY = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "flashback_contract"
    / "mock"
    / "demo"
    / "orgkey-acme-1.private.pem"
)


def test_demo_fixture_users_tokens_and_roles(store: Store, app: object) -> None:
    expected = {
        "demo-acme-owner": ("user-acme-owner", "org-acme", Role.OWNER),
        "demo-acme-admin": ("user-acme-admin", "org-acme", Role.ADMINISTRATORS),
        "demo-acme-user": ("user-acme-member", "org-acme", Role.USER),
        "demo-globex-owner": ("user-globex-owner", "org-globex", Role.OWNER),
    }
    with store.transaction() as uow:
        for token, (user_id, org_id, role) in expected.items():
            user = uow.user_by_token(token)
            assert user is not None
            assert (user.id, user.org_id, user.role) == (user_id, org_id, role)
            assert user.name and "@" in user.email
        assert uow.organization("org-acme").name == "Acme Corp"  # type: ignore[union-attr]
        assert uow.organization("org-globex").name == "Globex"  # type: ignore[union-attr]
        assert uow.repository("repo-acme-main").org_id == "org-acme"  # type: ignore[union-attr]
        assert uow.repository("repo-globex-main").org_id == "org-globex"  # type: ignore[union-attr]


def test_demo_fixture_organization_keys_and_node_keys(store: Store, app: object) -> None:
    with store.transaction() as uow:
        acme = uow.org_keys("org-acme")
        globex = uow.org_keys("org-globex")
    assert [k.id for k in acme] == ["orgkey-acme-3", "orgkey-acme-2", "orgkey-acme-1"]
    assert len({k.created_at for k in acme}) == 3
    assert {k.id: sorted(nk.node_id for nk in k.node_keys) for k in acme} == {
        "orgkey-acme-1": ["192.0.2.10", "192.0.2.11"],
        "orgkey-acme-2": ["192.0.2.12"],
        "orgkey-acme-3": [],
    }
    assert [k.id for k in globex] == ["orgkey-globex-1"]
    for key in [*acme, *globex]:
        public_key = serialization.load_pem_public_key(key.public_key.encode())
        assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048


def test_the_shipped_demo_private_key_belongs_to_orgkey_acme_1(store: Store, app: object) -> None:
    private_key = serialization.load_pem_private_key(DEMO_PRIVATE_KEY.read_bytes(), None)
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with store.transaction() as uow:
        keys = {k.id: k.public_key for k in uow.org_keys("org-acme")}
    assert keys["orgkey-acme-1"].strip() == public_pem.strip()


def test_demo_fixture_ai_api_keys(store: Store, app: object) -> None:
    with store.transaction() as uow:
        acme = {k.id: k for k in uow.ai_keys("repo-acme-main")}
        revoked = uow.ai_key("aikey-acme-revoked")
        globex = [k.id for k in uow.ai_keys("repo-globex-main")]
    assert {k: v.ai_type.value for k, v in acme.items()} == {
        "aikey-acme-openai": "OPENAI",
        "aikey-acme-anthropic": "ANTHROPIC",
    }
    assert revoked is not None and revoked.deleted_at is not None
    assert revoked.ai_type.value == "OPENAI" and revoked.repo_id == "repo-acme-main"
    assert globex == ["aikey-globex-openai"]


def test_a_seed_file_replaces_the_demo_fixture(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        """
organizations: [{id: org-one, name: One}]
users: [{id: u1, org: org-one, role: ADMINISTRATORS, token: tok-one}]
repositories: [{id: repo-one, org: org-one}]
aiApiKeys:
  - {id: ai-1, repo: repo-one, name: first, aiType: OTHER, createdAt: "2026-05-01T00:00:00Z"}
"""
    )
    app = create_app(Settings(store_url="memory://", seed_file=seed))
    with app.test_client() as client:
        assert client.get("/organization/org-acme/key", headers=bearer(OWNER)).status_code == 401
        listed = client.get("/repo/repo-one/ai/apikey", headers=bearer("tok-one"))
        keys = client.get("/organization/org-one/key", headers=bearer("tok-one"))
    assert [k["id"] for k in listed.json()["apiKeys"]] == ["ai-1"]
    assert keys.json() == {"success": True, "data": []}


@pytest.mark.parametrize(
    "text",
    [
        "- just a list",
        "users: [{id: u1, org: org-x, role: EMPEROR}]",
        "organizationKeys: [{id: k, org: o, publicKey: P, createdAt: '2026-01-01T00:00:00'}]",
    ],
)
def test_an_invalid_seed_file_is_refused_with_a_clear_error(tmp_path: Path, text: str) -> None:
    seed = tmp_path / "bad.yaml"
    seed.write_text(text)

    store = MemoryStore()

    with pytest.raises(SeedError):
        seed_if_empty(store, seed)
    with store.transaction() as uow:
        assert uow.is_empty()  # nothing half-loaded


def test_a_store_that_holds_data_is_not_reseeded_on_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    first = create_app(Settings(store_url=url))
    with first.test_client() as client:
        client.delete("/organization/org-acme/key", headers=bearer(OWNER))

    restarted_store = open_store(url)
    restarted = create_app(Settings(store_url=url), store=restarted_store)
    with restarted.test_client() as client:
        response = client.get("/organization/org-acme/key", headers=bearer(OWNER))
    restarted_store.close()

    assert response.json()["data"] == []
