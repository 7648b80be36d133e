"""The application factory: tests, the CLI and production servers build the app the same way."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from connexion import FlaskApp
from connexion.middleware import MiddlewarePosition
from starlette.types import Scope

from flashback_contract.contract import load_spec, spec_path
from flashback_contract.domain import utcnow
from flashback_contract.mock import frontend
from flashback_contract.mock.access_log import AccessLogMiddleware, path_templates
from flashback_contract.mock.auth import Authenticator, bearer_security_handler, control_info
from flashback_contract.mock.bodies import CONTRACT_JSON
from flashback_contract.mock.bridge import (
    ConnexionRoutedFlask,
    FlaskBridge,
    NoFormRequest,
    operation_of,
)
from flashback_contract.mock.documents import ContractDocuments, serve_swagger_ui_on_its_paths
from flashback_contract.mock.errors import install_error_handlers
from flashback_contract.mock.limits import RequestLimits
from flashback_contract.mock.seed import load_seed, read_seed, seed_if_empty
from flashback_contract.mock.services import EXTENSION_KEY, Services
from flashback_contract.mock.sessions import SessionMiddleware
from flashback_contract.mock.settings import Settings
from flashback_contract.mock.tokens import jwt_secret
from flashback_contract.mock.validators import (
    compiled_validator_map,
    validate_with_prepared_operations,
)
from flashback_contract.store import SessionPolicy, Store, open_sessions, open_store

log = logging.getLogger(__name__)
# connexion warns on every request to an operation with two request media types (importState
# takes JSON and YAML); the choice it reports is made by Content-Type and is not news.
logging.getLogger("connexion.operations.openapi3").setLevel(logging.ERROR)


# Operations that may take long whatever the store: RSA key generation, and the control
# operations whose work grows with all the data. They always run in a worker thread.
THREADED_OPERATIONS = frozenset({"generateOrgKey", "resetState", "importState", "exportState"})


def control_spec_path() -> Path:
    """Path of ``mock-control.yaml``, the mock's own control API (always in the package)."""
    return Path(str(resources.files(__package__).joinpath("mock-control.yaml")))


def large_body_routes(base_path: str, spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of the operations marked ``x-large-body``: their bodies are documents.

    The limits compare a request's path to these as they are, so a marked path takes no
    parameters: one that does is refused here rather than silently never matched.
    """
    routes = {
        (method.upper(), base_path + path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and op.get("x-large-body")
    }
    templated = sorted(path for _, path in routes if "{" in path)
    if templated:
        raise ValueError(f"x-large-body on a path with parameters: {', '.join(templated)}")
    return routes


def runs_in_thread(store: Store) -> Callable[[Scope], bool]:
    """Per request, after routing: may this operation wait? Then not on the event loop."""

    def in_thread(scope: Scope) -> bool:
        operation = operation_of(scope)
        if operation in THREADED_OPERATIONS:
            return True
        # GET handlers read in read-only transactions; every other operation may write.
        return store.may_wait(write=scope["method"] != "GET")

    return in_thread


def create_app(settings: Settings | None = None, store: Store | None = None) -> FlaskApp:
    """Build the mock server: the contract routes every operationId to its handler."""
    settings = settings or Settings.from_env()
    store = store or open_store(settings.store_url)
    if seed_if_empty(store, settings.seed_file):
        log.info("seeded %s from %s", store.url, settings.seed_file or "the demo fixture")

    # Read when the first session needs it (never, for most servers), then kept.
    seed = functools.cache(lambda: read_seed(settings.seed_file))
    sessions = open_sessions(
        store,
        lambda uow: load_seed(uow, seed()),
        SessionPolicy(
            max_sessions=settings.max_sessions,
            ttl=timedelta(seconds=settings.session_ttl_seconds),
            journal_size=settings.journal_size,
        ),
    )
    services = Services(
        settings=settings,
        default_store=store,
        sessions=sessions,
        clock=utcnow,
        jwt_secret=jwt_secret(store, settings.jwt_secret),
    )
    # Users and tokens are read from the request's session: the same seed, the same answers.
    authenticator = Authenticator(lambda: services.store, services.jwt_secret, services.kept)
    app = FlaskApp(
        __name__,
        # Query parameters the contract does not declare are refused (400), not ignored.
        strict_validation=True,
        validator_map=compiled_validator_map(),
        jsonifier=CONTRACT_JSON,
        security_map={
            "bearer": bearer_security_handler(
                authenticator.bearer_info, control_info(settings.control_token)
            )
        },
    )
    # In place of a2wsgi's thread pool for every request (see bridge.py).
    flask_app = app._middleware_app
    flask_app.asgi_app = FlaskBridge(flask_app.app.wsgi_app, runs_in_thread(store), flask_app.app)
    flask_app.app.request_class = NoFormRequest
    # Routed once, by connexion: Flask dispatches to the rule connexion chose (bridge.py).
    flask_app.app.__class__ = ConnexionRoutedFlask
    # Before the contract: an API at base path "" would match /__mock/ paths too.
    app.add_api(
        control_spec_path(),
        base_path=frontend.CONTROL_BASE_PATH,
        validate_responses=settings.validate_responses,
    )
    app.add_api(spec_path(), validate_responses=settings.validate_responses)
    app.app.extensions[EXTENSION_KEY] = services
    install_error_handlers(app)
    # First, so it is the outermost of the app's middleware and sees every response.
    control_spec = yaml.safe_load(control_spec_path().read_text("utf-8"))
    app.add_middleware(
        AccessLogMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        templates=path_templates([(frontend.CONTROL_BASE_PATH, control_spec), ("", load_spec())]),
        log_format=settings.log_format,
    )
    # Ahead of connexion's spec endpoints: the contract as written, with this mock in servers.
    app.add_middleware(ContractDocuments, position=MiddlewarePosition.BEFORE_SWAGGER, store=store)
    frontend.install(app, settings, sessions)
    # Inside CORS, so its refusals carry CORS headers; outside the limits, so a refused
    # request is journalled too.
    app.add_middleware(
        SessionMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        catalog=sessions,
        clock=lambda: services.clock(),
    )
    # Inside CORS, so refusals carry its headers; before anything parses the request.
    app.add_middleware(
        RequestLimits,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        max_body_bytes=settings.max_body_bytes,
        large_bodies=dict.fromkeys(
            large_body_routes(frontend.CONTROL_BASE_PATH, control_spec), settings.max_import_bytes
        ),
    )
    serve_swagger_ui_on_its_paths(app.middleware.middlewares)
    validate_with_prepared_operations(app.middleware.middlewares)
    return app
