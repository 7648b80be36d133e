"""``proxy --record``: the data real responses showed, as a seed file ``serve --seed`` loads.

Organizations, repositories, organization keys (public parts only) and AI API keys (never their
secrets), with one OWNER user per organization and a generated mock token each. A repository
belongs to the organization its caller (same token) was seen acting in; else to a placeholder.
Tokens are only ever held as hashes here.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from werkzeug.datastructures import Headers

from flashback_contract.conformance.validation import Exchange, Operation
from flashback_contract.domain import AiType

PLACEHOLDER_ORG = "org-recorded"
KEY_ID_HEADER = "X-Organization-Key-Id"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _public_pem(private_pem: str) -> str | None:
    """The public half of a PEM private key; the private key itself is dropped at once."""
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(
            private_pem.encode(), password=None
        )
    except (ValueError, TypeError):
        return None
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _org_key(item: Any, org: str) -> dict[str, Any] | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    if not isinstance(item.get("publicKey"), str) or not isinstance(item.get("createdAt"), str):
        return None
    nodes = [
        nk["nodeId"]
        for nk in item.get("nodeKeys") or []
        if isinstance(nk, dict) and isinstance(nk.get("nodeId"), str)
    ]
    return {
        "id": item["id"],
        "org": org,
        "createdAt": item["createdAt"],
        "publicKey": item["publicKey"],
        "nodes": nodes,
    }


def _ai_key(item: Any, repo: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    fields = ("id", "name", "aiType", "createdAt")
    if not all(isinstance(item.get(f), str) for f in fields):
        return None
    if item["aiType"] not in {t.value for t in AiType}:
        return None
    return {
        "id": item["id"],
        "repo": repo,
        "name": item["name"],
        "aiType": item["aiType"],
        "key": item.get("key") if isinstance(item.get("key"), str) else None,
        "createdAt": item["createdAt"],
        "deletedAt": item.get("deletedAt") if isinstance(item.get("deletedAt"), str) else None,
    }


@dataclass(frozen=True)
class _Seen:
    """One successful exchange as the recorder reads it."""

    params: dict[str, str]
    headers: Headers
    body: bytes | None
    parsed: Any
    request: dict[str, Any]


class Recorder:
    """Follows successful responses and keeps the last state they showed."""

    def __init__(self) -> None:
        self.orgs: dict[str, None] = {}
        self.org_keys: dict[str, dict[str, dict[str, Any]]] = {}
        self.repos: dict[str, str | None] = {}  # repository -> caller hash
        self.ai_keys: dict[str, dict[str, dict[str, Any]]] = {}
        self.caller_orgs: dict[str, str] = {}
        self._tokens: dict[str, str] = {}

    @staticmethod
    def _caller(exchange: Exchange) -> str | None:
        authorization = exchange.header_map.get("authorization")
        if not authorization:
            return None
        return hashlib.sha256(authorization.encode()).hexdigest()

    def observe(
        self,
        operation: Operation,
        exchange: Exchange,
        headers: Headers,
        body: bytes | None,
        parsed: Any,
    ) -> None:
        """One successful (2xx) exchange."""
        caller = self._caller(exchange)
        params = operation.path_params
        org, repo = params.get("idOrg"), params.get("repoId")
        if org is not None:
            self.orgs.setdefault(org)
            self.org_keys.setdefault(org, {})
            if caller is not None:
                self.caller_orgs.setdefault(caller, org)
        if repo is not None:
            if self.repos.get(repo) is None:
                self.repos[repo] = caller
            self.ai_keys.setdefault(repo, {})
        handler = getattr(self, f"_on_{operation.name}", None)
        if handler is not None:
            handler(_Seen(dict(params), headers, body, parsed, _json_object(exchange.body)))

    # One method per operation whose response shows data, named after its operationId.

    def _on_getOrgKeys(self, seen: _Seen) -> None:
        org = seen.params["idOrg"]
        items = seen.parsed.get("data") if isinstance(seen.parsed, dict) else None
        if isinstance(items, list):
            keys = (_org_key(item, org) for item in items)
            self.org_keys[org] = {k["id"]: k for k in keys if k is not None}

    def _on_generateOrgKey(self, seen: _Seen) -> None:
        key_id = seen.headers.get(KEY_ID_HEADER)
        if isinstance(seen.parsed, str):
            pem = seen.parsed
        else:
            pem = (seen.body or b"").decode("utf-8", "replace")
        public = _public_pem(pem) if key_id else None
        if key_id and public:
            org = seen.params["idOrg"]
            self.org_keys[org][key_id] = {
                "id": key_id,
                "org": org,
                "createdAt": _now(),
                "publicKey": public,
                "nodes": [],
            }

    def _on_deleteOrgKeys(self, seen: _Seen) -> None:
        self.org_keys[seen.params["idOrg"]] = {}

    def _on_deleteOrgKey(self, seen: _Seen) -> None:
        self.org_keys[seen.params["idOrg"]].pop(seen.params.get("idKey", ""), None)

    def _on_getRepoAiApiKeys(self, seen: _Seen) -> None:
        repo = seen.params["repoId"]
        items = seen.parsed.get("apiKeys") if isinstance(seen.parsed, dict) else None
        if isinstance(items, list):
            keys = (_ai_key(item, repo) for item in items)
            self.ai_keys[repo] = {k["id"]: k for k in keys if k is not None}

    def _on_createRepoAiApiKey(self, seen: _Seen) -> None:
        if not isinstance(seen.parsed, dict):
            return
        # The secret is in this response: only the id and the key are taken from it.
        shown = {"id": seen.parsed.get("id"), "key": seen.parsed.get("key"), "createdAt": _now()}
        key = _ai_key({**seen.request, **shown}, seen.params["repoId"])
        if key is not None:
            self.ai_keys[seen.params["repoId"]][key["id"]] = key

    def _on_updateRepoAiApiKey(self, seen: _Seen) -> None:
        name = seen.request.get("name")
        known = self.ai_keys[seen.params["repoId"]].get(seen.params.get("apikeyId", ""))
        if known is not None and isinstance(name, str):
            known["name"] = name

    def _on_deleteRepoAiApiKey(self, seen: _Seen) -> None:
        self.ai_keys[seen.params["repoId"]].pop(seen.params.get("apikeyId", ""), None)

    def _repo_org(self, repo: str) -> str:
        caller = self.repos.get(repo)
        return self.caller_orgs.get(caller or "", PLACEHOLDER_ORG)

    def token(self, org: str) -> str:
        """The generated mock token of the organization's recorded OWNER."""
        if org not in self._tokens:
            self._tokens[org] = f"mock-{secrets.token_urlsafe(18)}"
        return self._tokens[org]

    def seed(self) -> dict[str, Any]:
        """The seed document (the ``serve --seed`` format)."""
        repos = {repo: self._repo_org(repo) for repo in self.repos}
        orgs = list(dict.fromkeys([*self.orgs, *repos.values()]))
        return {
            "organizations": [
                {"id": org, "name": "Recorded placeholder" if org == PLACEHOLDER_ORG else org}
                for org in orgs
            ],
            "users": [
                {
                    "id": f"user-{org}-owner",
                    "org": org,
                    "role": "OWNER",
                    "token": self.token(org),
                    "name": f"Owner of {org}",
                    "email": f"owner@{org}.example",
                }
                for org in orgs
            ],
            "repositories": [{"id": r, "org": o, "name": r} for r, o in repos.items()],
            "organizationKeys": [k for keys in self.org_keys.values() for k in keys.values()],
            "aiApiKeys": [k for keys in self.ai_keys.values() for k in keys.values()],
        }

    def write(self, path: Path) -> dict[str, Any]:
        data = self.seed()
        header = (
            "# Recorded by `flashback-contract proxy --record` from real responses.\n"
            "# Load it with `flashback-contract serve --seed FILE`. The tokens are generated\n"
            "# mock tokens (one OWNER per organization), not the backend's.\n"
        )
        path.write_text(header + yaml.safe_dump(data, sort_keys=False), "utf-8")
        return data


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
