"""Access rules and the documented messages they answer with, in one place."""

from __future__ import annotations

from flashback_contract.domain import Repository, Role
from flashback_contract.mock.auth import Principal
from flashback_contract.mock.errors import ApiError
from flashback_contract.store import UnitOfWork

ORG_KEY_MANAGERS = frozenset({Role.ADMINISTRATORS, Role.OWNER})

ORG_KEYS_FORBIDDEN = "Access denied: you can only manage keys for your own organization"
ORG_KEY_NOT_FOUND = "Organization key not found or does not belong to this organization"
REPOSITORY_FORBIDDEN = "Access denied: you do not have access to this repository"
AI_API_KEY_NOT_FOUND = "AI API key not found"


def orgkeys_quota_reached(maximum: int) -> str:
    return (
        f"Maximum number of organization keys ({maximum}) has been reached. "
        "Please delete existing keys before creating new ones."
    )


def require_org_key_manager(principal: Principal, org_id: str) -> None:
    """Organization keys: ADMINISTRATORS or OWNER of that very organization, else 403.

    An unknown organization is refused the same way, so ids do not leak.
    """
    if principal.org_id != org_id or principal.role not in ORG_KEY_MANAGERS:
        raise ApiError(403, ORG_KEYS_FORBIDDEN)


def require_repository_access(uow: UnitOfWork, principal: Principal, repo_id: str) -> Repository:
    """Repository AI keys: any member of the repository's organization, else 403.

    An unknown repository is refused like another organization's one.
    """
    return require_repository_member(principal, uow.repository(repo_id))


def require_repository_member(principal: Principal, repository: Repository | None) -> Repository:
    """As ``require_repository_access``, given the repository read (None: not found)."""
    if repository is None or repository.org_id != principal.org_id:
        raise ApiError(403, REPOSITORY_FORBIDDEN)
    return repository


def visible_event_user(principal: Principal, requested_user: str | None) -> str | None:
    """Whose events the caller may read, as a user filter (None: the whole organization).

    OWNER and ADMINISTRATORS read every event of their organization (narrowed to
    ``requested_user`` if asked); other roles read only their own, whatever they ask.
    """
    if principal.role in ORG_KEY_MANAGERS:
        return requested_user
    if requested_user not in (None, principal.user_id):
        return NOBODY
    return principal.user_id


# A user id no event carries: asking for another user's events finds none.
NOBODY = "\x00nobody"
