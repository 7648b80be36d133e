"""Repository AI API keys: create, list, update and (soft) delete."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from flashback_contract.domain import (
    AiType,
    EventContext,
    EventType,
    RepoAiApiKey,
    Repository,
    iso,
)
from flashback_contract.mock import policy
from flashback_contract.mock.auth import Principal, principal_of
from flashback_contract.mock.crypto import new_ai_api_key, new_ai_api_secret, secret_sha256
from flashback_contract.mock.errors import ApiError
from flashback_contract.mock.services import current_services
from flashback_contract.store import UnitOfWork


def _repo_ai_api_key(key: RepoAiApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "repoId": key.repo_id,
        "key": key.key,
        "aiType": key.ai_type.value,
        "createdAt": iso(key.created_at),
        "deletedAt": None if key.deleted_at is None else iso(key.deleted_at),
    }


def _active_key(uow: UnitOfWork, principal: Principal, repo_id: str, key_id: str) -> RepoAiApiKey:
    """The repository's key, if the caller may see the repository and the key is not deleted."""
    policy.require_repository_access(uow, principal, repo_id)
    key = uow.ai_key(key_id)
    if key is None or key.repo_id != repo_id or key.is_deleted:
        raise ApiError(404, policy.AI_API_KEY_NOT_FOUND)
    return key


def createRepoAiApiKey(
    repoId: str, body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    principal = principal_of(token_info)
    services = current_services()
    secret = new_ai_api_secret()
    with services.store.transaction() as uow:
        policy.require_repository_access(uow, principal, repoId)
        key = RepoAiApiKey(
            id=str(uuid.uuid4()),
            repo_id=repoId,
            name=body["name"],
            key=new_ai_api_key(),
            ai_type=AiType(body["aiType"]),
            secret_sha256=secret_sha256(secret),
            created_at=services.clock(),
        )
        uow.add_ai_key(key)
        services.record_event(
            uow,
            principal,
            EventContext.aillmapikey,
            EventType.created,
            key.id,
            details={"repoId": repoId, "name": key.name, "aiType": key.ai_type.value},
        )
    # The only time the secret is shown.
    return {
        "success": True,
        "id": key.id,
        "key": key.key,
        "secret": secret,
        "message": "AI API key created successfully",
    }, 201


def getRepoAiApiKeys(repoId: str, token_info: dict[str, Any]) -> tuple[dict[str, Any], int]:
    principal = principal_of(token_info)
    repository, keys = current_services().read_kept(
        ("repo_ai_keys", repoId), functools.partial(_repository_and_keys, repoId), _listed
    )
    policy.require_repository_member(principal, repository)
    return {"success": True, "apiKeys": [_repo_ai_api_key(k) for k in keys]}, 200


def _listed(found: tuple[Repository | None, tuple[RepoAiApiKey, ...]]) -> int:
    return len(found[1])


def _repository_and_keys(
    repo_id: str, uow: UnitOfWork
) -> tuple[Repository | None, tuple[RepoAiApiKey, ...]]:
    """The repository and its active keys, whoever asks (the caller's access is checked after)."""
    repository = uow.repository(repo_id)
    return repository, () if repository is None else tuple(uow.ai_keys(repo_id))


def updateRepoAiApiKey(
    repoId: str, apikeyId: str, body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    principal = principal_of(token_info)
    services = current_services()
    with services.store.transaction() as uow:
        key = _active_key(uow, principal, repoId, apikeyId)
        name = body.get("name")
        if name is not None:
            # The name the key has now, not the one read above: a rename may have raced us.
            previous = uow.rename_ai_key(key.id, name)
            if previous is None:
                raise ApiError(404, policy.AI_API_KEY_NOT_FOUND)
            if previous != name:
                services.record_event(
                    uow,
                    principal,
                    EventContext.aillmapikey,
                    EventType.updated,
                    key.id,
                    details={"repoId": repoId, "name": {"from": previous, "to": name}},
                )
    return {"success": True, "message": "AI API key updated successfully"}, 200


def deleteRepoAiApiKey(
    repoId: str, apikeyId: str, token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    principal = principal_of(token_info)
    services = current_services()
    with services.store.transaction() as uow:
        key = _active_key(uow, principal, repoId, apikeyId)
        # Of racing deletes one wins; the others answer as if they came after it.
        if not uow.soft_delete_ai_key(key.id, services.clock()):
            raise ApiError(404, policy.AI_API_KEY_NOT_FOUND)
        services.record_event(
            uow,
            principal,
            EventContext.aillmapikey,
            EventType.deleted,
            key.id,
            details={"repoId": repoId},
        )
    return {"success": True, "message": "AI API key deleted successfully"}, 200
