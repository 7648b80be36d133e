"""Seed files: the demo fixture and any YAML file of the same shape."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator, ValidationError

from flashback_contract.domain import (
    AiType,
    EventContext,
    EventType,
    Node,
    NodeKey,
    Organization,
    OrganizationKey,
    Provider,
    RepoAiApiKey,
    Repository,
    Role,
    SystemEvent,
    User,
)
from flashback_contract.mock.crypto import unseen_secret_hashes
from flashback_contract.mock.seed_yaml import AliasFound, SafeLoader, TooDeep, Unsupported, build
from flashback_contract.store import Store, UnitOfWork
from flashback_contract.store.base import Dataset


class SeedError(ValueError):
    """A seed file that cannot be loaded."""


# A seed with many mistakes: the first few, each with its path, are enough to act on.
MAX_PROBLEMS_SHOWN = 5
# A seed nests four deep (document, list, record, list of nodes); far deeper is never a seed.
MAX_SEED_DEPTH = 32
ALIASES_REFUSED = "YAML aliases (*name) are not accepted in seed documents"


def demo_seed_text() -> str:
    return resources.files(__package__).joinpath("demo/demo.yaml").read_text("utf-8")


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath("seed.schema.json").read_text()
    )
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(_schema())


@cache
def _fast_check() -> jsonschema_rs.Draft202012Validator:
    """The same schema in a compiled validator: 100,000 keys in a fraction of a second."""
    return jsonschema_rs.Draft202012Validator(_schema())


def _where(path: Iterable[str | int]) -> str:
    """``users[2].org`` for the path ``("users", 2, "org")``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(error: ValidationError) -> str:
    where = _where(error.absolute_path)
    # jsonschema types these loosely; for the keywords below they are as the schema wrote them.
    instance: Any = error.instance
    expected: Any = error.validator_value
    schema: Any = error.schema
    if error.validator == "required":
        missing = next(n for n in expected if n not in instance)
        return f"{_where([*error.absolute_path, missing])}: required"
    if error.validator == "additionalProperties":
        unknown = sorted(set(instance) - set(schema.get("properties", {})))
        return "; ".join(f"{_where([*error.absolute_path, n])}: not allowed" for n in unknown)
    if error.validator == "pattern" and "description" in schema:
        return f"{where}: {instance!r} is not {schema['description']}"
    if error.validator == "minItems" and expected == 1:
        return f"{where}: must not be empty"
    return f"{where or 'the document'}: {error.message}"


def _jsonable(value: Any) -> Any:
    """YAML dates as the ISO strings JSON would carry, so one schema fits both."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _references(data: dict[str, Any]) -> list[str]:
    """Ids that must be unique, and references that must name an entry of the document."""
    problems: list[str] = []
    known: dict[str, set[str]] = {}
    for section, field in [
        ("organizations", "id"),
        ("users", "id"),
        ("users", "token"),
        ("repositories", "id"),
        ("organizationKeys", "id"),
        ("aiApiKeys", "id"),
        ("nodes", "ip"),
    ]:
        seen = known.setdefault(f"{section}.{field}", set())
        for i, entry in enumerate(data.get(section, [])):
            value = entry.get(field)
            if value is not None and value in seen:
                problems.append(f"{section}[{i}].{field}: duplicate {value!r}")
            seen.add(value)
    references = [
        ("users", "org", "organizations.id", "organization"),
        ("repositories", "org", "organizations.id", "organization"),
        ("organizationKeys", "org", "organizations.id", "organization"),
        ("nodes", "org", "organizations.id", "organization"),
        ("aiApiKeys", "repo", "repositories.id", "repository"),
        ("systemEvents", "org", "organizations.id", "organization"),
    ]
    for section, field, target, noun in references:
        for i, entry in enumerate(data.get(section, [])):
            if entry[field] not in known[target]:
                problems.append(
                    f"{section}[{i}].{field}: no {noun} {entry[field]!r} in the document"
                )
    for i, event in enumerate(data.get("systemEvents", [])):
        for j, reader in enumerate(event.get("readBy", [])):
            if reader not in known["users.id"]:
                problems.append(
                    f"systemEvents[{i}].readBy[{j}]: no user {reader!r} in the document"
                )
    return problems


def validate_seed(data: Any, dates: bool = True) -> dict[str, Any]:
    """The document, if it is a seed (``seed.schema.json`` and its references); else SeedError."""
    if data is None or data == {}:
        raise SeedError("the document is empty: it needs at least organizations and users")
    if not isinstance(data, dict):
        raise SeedError("expected a mapping at the top level")
    document: dict[str, Any] = _jsonable(data) if dates else data
    # The compiled check answers "valid?"; jsonschema explains what is not, path by path.
    valid = _fast_check().is_valid(document)
    problems = [] if valid else [_problem(e) for e in _validator().iter_errors(document)]
    if not problems:
        problems = _references(document)
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise SeedError("; ".join(shown) + (f"; and {more} more" if more else ""))
    return document


def parse_seed(text: str | bytes) -> dict[str, Any]:
    """A seed document from YAML or JSON text (JSON is YAML), validated."""
    if text.lstrip()[:1] in ("{", b"{"):
        # JSON is YAML, and the JSON parser reads it many times faster; it holds no dates.
        try:
            data = json.loads(text)
        except RecursionError as exc:
            raise SeedError("the document is nested too deeply") from exc
        except ValueError:
            pass  # YAML in flow style, say: the YAML parser decides
        else:
            return validate_seed(data, dates=False)
    try:
        built = build(text, MAX_SEED_DEPTH)
    except AliasFound as exc:
        raise SeedError(ALIASES_REFUSED) from exc
    except TooDeep as exc:
        raise SeedError("the document is nested too deeply") from exc
    except Unsupported:
        pass  # YAML beyond plain trees (tags, merge keys): PyYAML's own loader reads it
    except yaml.YAMLError as exc:
        raise SeedError("not YAML or JSON: " + " ".join(str(exc).split())) from exc
    else:
        return validate_seed(built.value, dates=built.dates)
    try:
        _refuse_aliases(text)
        data = yaml.load(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        raise SeedError("not YAML or JSON: " + " ".join(str(exc).split())) from exc
    except RecursionError as exc:
        raise SeedError("the document is nested too deeply") from exc
    except (ValueError, KeyError, OverflowError) as exc:
        # A tagged or date-like scalar PyYAML's constructors cannot make (build names which).
        raise SeedError(f"not YAML or JSON: a value cannot be read ({exc})") from exc
    return validate_seed(data)


def _refuse_aliases(text: str | bytes) -> None:
    """Aliases let a few hundred bytes expand exponentially (a "billion laughs"): refused."""
    # An alias needs an anchor (&name): without one, no scan is needed.
    anchored = "&" in text if isinstance(text, str) else b"&" in text
    if not anchored:
        return
    for event in yaml.parse(text, Loader=SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise SeedError(ALIASES_REFUSED)


def read_seed(path: Path | None) -> dict[str, Any]:
    text = demo_seed_text() if path is None else Path(path).read_text("utf-8")
    try:
        return parse_seed(text)
    except SeedError as exc:
        raise SeedError(f"seed {path or 'demo'}: {exc}") from exc


def _when(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise SeedError(f"seed date {value!r} needs a time zone (for example Z)")
    return moment


def load_seed(uow: UnitOfWork, data: dict[str, Any]) -> None:
    """Write a seed's records through a unit of work."""
    try:
        for org in data.get("organizations", []):
            uow.add_organization(Organization(id=org["id"], name=org["name"]))
        for user in data.get("users", []):
            uow.add_user(
                User(
                    id=user["id"],
                    org_id=user["org"],
                    role=Role[user["role"]],
                    name=user.get("name", ""),
                    email=user.get("email", ""),
                ),
                token=user.get("token"),
            )
        for repo in data.get("repositories", []):
            uow.add_repository(
                Repository(id=repo["id"], org_id=repo["org"], name=repo.get("name", ""))
            )
        # Stores list newest first by insertion order, so insert oldest first.
        for key in sorted(data.get("organizationKeys", []), key=lambda k: _when(k["createdAt"])):
            uow.add_org_key(
                OrganizationKey(
                    id=key["id"],
                    org_id=key["org"],
                    public_key=key["publicKey"],
                    created_at=_when(key["createdAt"]),
                    node_keys=tuple(NodeKey(key["id"], str(node)) for node in key.get("nodes", [])),
                )
            )
            for ip in key.get("nodes", []):
                # Seeded nodes registered with this key; details are placeholders.
                uow.save_node(
                    Node(
                        ip=str(ip),
                        org_id=key["org"],
                        key_id=key["id"],
                        provider=Provider.S3,
                        region="us-east-1",
                        version="1.0.0",
                        status="ONLINE",
                        updated_at=_when(key["createdAt"]),
                    )
                )
        seeded = data.get("aiApiKeys", [])
        ai_keys = [
            RepoAiApiKey(
                id=ai["id"],
                repo_id=ai["repo"],
                name=ai["name"],
                key=ai.get("key"),
                ai_type=AiType(ai["aiType"]),
                # Seeded secrets are random: nobody ever saw them, as after a real creation.
                secret_sha256=hashed,
                created_at=_when(ai["createdAt"]),
                deleted_at=None if ai.get("deletedAt") is None else _when(ai["deletedAt"]),
            )
            for ai, hashed in zip(seeded, unseen_secret_hashes(len(seeded)), strict=True)
        ]
        uow.add_ai_keys(sorted(ai_keys, key=lambda k: k.created_at))
        for node in data.get("nodes", []):
            uow.save_node(
                Node(
                    ip=node["ip"],
                    org_id=node["org"],
                    key_id=node["key"],
                    provider=Provider(node["provider"]),
                    region=node["region"],
                    version=node["version"],
                    status=node["status"],
                    services=node.get("services"),
                    updated_at=_when(node["updatedAt"]),
                )
            )
        for event in sorted(data.get("systemEvents", []), key=lambda e: _when(e["timestamp"])):
            event_id = uow.add_event(
                SystemEvent(
                    context=EventContext[event["context"]],
                    event=EventType[event["event"]],
                    org_id=event["org"],
                    user_id=event.get("user"),
                    context_id=event["contextId"],
                    timestamp=_when(event["timestamp"]),
                    json_data=event.get("jsonData"),
                    workspace_id=event.get("workspaceId"),
                )
            )
            for reader in event.get("readBy", []):
                uow.mark_event_read(event_id, reader)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise SeedError(f"invalid seed: {exc!r}") from exc


def dump_seed(data: Dataset) -> dict[str, Any]:
    """All data as a seed document: what `GET /__mock/state` exports and `--seed` can load.

    Each event lists the users who have read it in ``readBy``.

    AI API key secret hashes, the JWT secret and replay records are left out; a
    load gives the keys new random secrets nobody has seen, as the demo fixture does.
    """
    readers: dict[int, list[str]] = {}
    for read in data.event_reads:
        readers.setdefault(read.event_id, []).append(read.user_id)
    return {
        "organizations": [{"id": o.id, "name": o.name} for o in data.organizations],
        "users": [
            {
                "id": u.id,
                "org": u.org_id,
                "role": u.role.name,
                "token": token,
                "name": u.name,
                "email": u.email,
            }
            for u, token in data.users
        ],
        "repositories": [{"id": r.id, "org": r.org_id, "name": r.name} for r in data.repositories],
        "organizationKeys": [
            {
                "id": k.id,
                "org": k.org_id,
                "createdAt": k.created_at.isoformat(),
                "publicKey": k.public_key,
                "nodes": [nk.node_id for nk in k.node_keys],
            }
            for k in data.org_keys
        ],
        "nodes": [
            {
                "ip": n.ip,
                "org": n.org_id,
                "key": n.key_id,
                "provider": n.provider.value,
                "region": n.region,
                "version": n.version,
                "status": n.status,
                "services": n.services,
                "updatedAt": n.updated_at.isoformat(),
            }
            for n in data.nodes
        ],
        "aiApiKeys": [
            {
                "id": k.id,
                "repo": k.repo_id,
                "name": k.name,
                "aiType": k.ai_type.value,
                "key": k.key,
                "createdAt": k.created_at.isoformat(),
                "deletedAt": None if k.deleted_at is None else k.deleted_at.isoformat(),
            }
            for k in data.ai_keys
        ],
        "systemEvents": [
            {
                "timestamp": e.timestamp.isoformat(),
                "context": e.context.name,
                "event": e.event.name,
                "org": e.org_id,
                "user": e.user_id,
                "contextId": e.context_id,
                "jsonData": e.json_data,
                "workspaceId": e.workspace_id,
                "readBy": readers.get(e.id, []) if e.id is not None else [],
            }
            for e in data.events
        ],
    }


def replace_state(uow: UnitOfWork, data: dict[str, Any]) -> None:
    """Make a seed document the whole state, in the caller's transaction."""
    # Racing resets or imports would each clear, then collide inserting the same ids.
    uow.lock_state()
    uow.clear()
    load_seed(uow, data)


def seed_if_empty(store: Store, seed_file: Path | None) -> bool:
    """Load the seed into an empty store; a store holding data is left alone. True if seeded."""
    with store.reading() as uow:
        if not uow.is_empty():
            return False  # without reading the seed, which may be large
    data = read_seed(seed_file)
    with store.transaction() as uow:
        uow.lock_state()
        if not uow.is_empty():
            return False
        load_seed(uow, data)
    return True


@dataclass(frozen=True)
class StartingData:
    """What a store held when the server started: seeded now, or kept from an earlier run."""

    seeded: bool
    # Organization keys and active AI API keys; 0 when seeded.
    kept_keys: int
    # (user id, organization, role, token) of the users holding a static token.
    tokens: list[tuple[str, str, str, str]]


def prepare_store(
    store: Store, seed_file: Path | None, reset: bool, data: dict[str, Any] | None = None
) -> StartingData:
    """Seed an empty store (or any store, with ``reset``); otherwise keep its data as it is.

    ``data`` is the seed already read from ``seed_file``, if the caller has it.
    """
    data = read_seed(seed_file) if data is None else data
    with store.transaction() as uow:
        # Servers starting together on one database: one seeds, the others find it seeded.
        uow.lock_state()
        seeded = reset or uow.is_empty()
        if seeded:
            replace_state(uow, data)
            # What was just written: the seed's users, not a read of all the data back.
            tokens = [
                (u["id"], u["org"], Role[u["role"]].name, u["token"])
                for u in data.get("users", [])
                if u.get("token")
            ]
            return StartingData(seeded=True, kept_keys=0, tokens=sorted(tokens))
        everything = uow.everything()
    kept_keys = len(everything.org_keys) + sum(not k.is_deleted for k in everything.ai_keys)
    tokens = [(u.id, u.org_id, u.role.name, t) for u, t in everything.users if t]
    return StartingData(seeded=False, kept_keys=kept_keys, tokens=sorted(tokens))
