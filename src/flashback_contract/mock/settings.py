"""Settings: one object the app factory, the CLI and the tests build the app from."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flashback_contract.store import DEFAULT_STORE_URL


@dataclass(frozen=True)
class Settings:
    store_url: str = DEFAULT_STORE_URL
    # None loads the demo fixture shipped with the package.
    seed_file: Path | None = None
    orgkeys_max: int = 5
    validate_responses: bool = False
    # HS256 secret for JWT access tokens; None keeps a generated one with the store.
    jwt_secret: str | None = None
    # Bearer token for /__mock/; None opens it to loopback clients only.
    control_token: str | None = None
    # CORS for browser apps on other origins: on by default, any origin, no credentials.
    cors: bool = True
    cors_origins: tuple[str, ...] = ("*",)
    # Request headers allowed in preflights besides those the contract and the mock use.
    cors_headers: tuple[str, ...] = ()
    # Latency added to every contract operation, and the share answered with a documented 500.
    delay_ms: int = 0
    fail_rate: float = 0.0
    # The access log's format: "text" (one short line) or "json" (one object per line).
    log_format: str = "text"
    # How far a signed node request's timestamp may be from the server clock.
    node_clock_skew_seconds: int = 300
    # Larger request bodies are refused with 413 before anything parses them.
    max_body_bytes: int = 1024 * 1024
    # The bound for operations marked `x-large-body` (importState: a whole seed document).
    max_import_bytes: int = 64 * 1024 * 1024
    # Sessions (/__session/{name}/ or X-Mock-Session): how many at once, how long an idle one
    # lives, and how many requests each journal keeps (0 turns the journal off).
    max_sessions: int = 100
    session_ttl_seconds: int = 3600
    journal_size: int = 1000

    def to_json(self) -> str:
        """The settings as JSON, for worker processes to build the same app (``from_json``)."""
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        values: dict[str, Any] = json.loads(text)
        if values.get("seed_file") is not None:
            values["seed_file"] = Path(values["seed_file"])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the environment (FLASHBACK_STORE, ORGKEYS_MAX, ...), then overrides."""
        values: dict[str, object] = {}
        if "FLASHBACK_STORE" in os.environ:
            values["store_url"] = os.environ["FLASHBACK_STORE"]
        if "ORGKEYS_MAX" in os.environ:
            values["orgkeys_max"] = int(os.environ["ORGKEYS_MAX"])
        if "FLASHBACK_NODE_CLOCK_SKEW" in os.environ:
            values["node_clock_skew_seconds"] = int(os.environ["FLASHBACK_NODE_CLOCK_SKEW"])
        if "FLASHBACK_MAX_BODY_BYTES" in os.environ:
            values["max_body_bytes"] = int(os.environ["FLASHBACK_MAX_BODY_BYTES"])
        if "FLASHBACK_MAX_IMPORT_BYTES" in os.environ:
            values["max_import_bytes"] = int(os.environ["FLASHBACK_MAX_IMPORT_BYTES"])
        if os.environ.get("FLASHBACK_JWT_SECRET"):
            values["jwt_secret"] = os.environ["FLASHBACK_JWT_SECRET"]
        if os.environ.get("FLASHBACK_CONTROL_TOKEN"):
            values["control_token"] = os.environ["FLASHBACK_CONTROL_TOKEN"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
