"""How connexion reaches Flask: on the event loop when an operation cannot block, else in a thread.

connexion's FlaskApp hands every request to a2wsgi's thread pool and every response chunk back
to the loop; those hand-offs cost more CPU than the handlers. Most operations here do a few
microseconds of in-process work, which the loop can run itself. Operations that may wait (RSA
key generation, a store call that can wait on a lock or a network) still go to a worker thread,
so they never hold up other clients. The choice is made per request, after routing.

Routing is done once, by connexion: the bridge hands Flask the rule of the operation connexion
routed to, and ``ConnexionRoutedFlask`` dispatches to it instead of matching the URL again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import flask
import flask.ctx
from a2wsgi.wsgi import build_environ
from connexion import context as connexion_context
from connexion.apps.flask import FlaskOperation
from connexion.decorators import FlaskDecorator
from connexion.decorators.parameter import SyncParameterDecorator
from connexion.lifecycle import WSGIRequest
from connexion.uri_parsing import AbstractURIParser
from starlette.types import Receive, Scope, Send
from werkzeug.routing import MapAdapter, Rule, UnicodeConverter

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Response = tuple[int, list[tuple[bytes, bytes]], bytes]

ROUTING = "connexion_routing"
# The WSGI environ key under which the bridge hands Flask the rule connexion routed to.
ROUTED_RULE = "flashback_contract.routed_rule"


def operation_of(scope: Scope) -> str | None:
    """The operationId connexion routed the request to (None before routing, or unrouted)."""
    routed = scope.get("extensions", {}).get(ROUTING, {}).get("operation_id")
    return None if routed is None else str(routed).rsplit(".", 1)[-1]


class NamesKeptParameterDecorator(SyncParameterDecorator):  # type: ignore[misc]
    """connexion's parameter decorator, which sanitizes each parameter name once, not per call.

    Every request runs the operation's parameter and body names through three regular
    expressions (``sanitized``) to find the handler's argument names; the names are the
    contract's, so the answers are kept.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sanitize_fn: Callable[[str], str] = functools.lru_cache(maxsize=256)(self.sanitize_fn)


class PreparedDecorator(FlaskDecorator):  # type: ignore[misc]
    """connexion's Flask decorator, with ``NamesKeptParameterDecorator``."""

    @property
    def _parameter_decorator_cls(self) -> type[SyncParameterDecorator]:
        return NamesKeptParameterDecorator


class PreparedOperation:
    """A connexion ``FlaskOperation`` whose decorators are built once, not on every request.

    connexion builds the operation's decorator stack anew for each request it routes to Flask:
    a ``FlaskDecorator``, its parameter decorator (``inspect.signature`` of the handler) and
    its response decorator. None of it depends on the request, which the decorated function
    reads when called (through connexion's context), so it is built here at start-up. The
    call itself is connexion's ``WSGIDecorator`` wrapper. The URI parser, which connexion also
    builds per request from the routed operation's parameters, is kept for that operation.
    """

    def __init__(self, operation: FlaskOperation) -> None:
        self._decorator = PreparedDecorator(
            pythonic_params=operation.pythonic_params, jsonifier=operation.jsonifier
        )
        self._decorated = self._decorator.decorate(operation._fn)
        self.operation_id: str = operation.operation_id
        # (the routed connexion operation, its URI parser); one tuple, replaced whole.
        self._uri_parser: tuple[object, AbstractURIParser] | None = None
        functools.update_wrapper(self, operation)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # connexion's FlaskFramework.get_request, given the request itself rather than
        # flask.request: through that proxy every attribute the handler's decorators read
        # fails a normal lookup first (a formatted AttributeError) and is then proxied.
        real = flask.request._get_current_object()  # type: ignore[attr-defined]
        request = WSGIRequest(real, uri_parser=self._parser(), view_args=real.view_args)
        return self._decorated(request)

    def _parser(self) -> AbstractURIParser:
        routed = connexion_context._operation.get()
        kept = self._uri_parser
        if kept is None or kept[0] is not routed:
            kept = (routed, self._decorator.uri_parser)
            self._uri_parser = kept
        return kept[1]


# The bodies werkzeug parses as forms; the contract's operations take JSON (or YAML) instead.
FORM_MEDIA_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


class NoFormRequest(flask.Request):
    """Flask's request, which looks for a form only in a form body.

    connexion asks every request for its uploaded files (``request.files``). werkzeug answers
    by setting up the body stream and a form parser (three configuration reads through
    ``current_app``, each a failed attribute lookup first) to find nothing in a JSON body or
    a GET. For a body that is not a form the answer is known: no fields, no files, and the
    body stream untouched, read later as JSON as before.
    """

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        if self.mimetype in FORM_MEDIA_TYPES:
            super()._load_form_data()
            return
        self.__dict__["form"] = self.parameter_storage_class()
        self.__dict__["files"] = self.parameter_storage_class()


def prepare_operations(app: flask.Flask) -> None:
    """Every contract operation's Flask view as a ``PreparedOperation``."""
    for endpoint, view in app.view_functions.items():
        if isinstance(view, FlaskOperation):
            app.view_functions[endpoint] = PreparedOperation(view)


def operation_rules(app: flask.Flask) -> dict[tuple[str, str], Rule]:
    """(API base path, operationId) -> the Flask rule connexion registered for it.

    Only rules whose path parameters are plain strings (werkzeug's default converter), for
    which the values starlette's router extracted are exactly what werkzeug would: others,
    and an operation registered twice under one base path, are left to Flask's own routing.
    """
    rules: dict[tuple[str, str], Rule] = {}
    ambiguous: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        blueprint = app.blueprints.get(rule.endpoint.rpartition(".")[0])
        if not isinstance(view, PreparedOperation) or blueprint is None:
            continue
        if not all(type(c) is UnicodeConverter for c in rule._converters.values()):
            continue
        key = (blueprint.url_prefix or "", view.operation_id)
        if key in rules:
            ambiguous.add(key)
        rules[key] = rule
    for key in ambiguous:
        del rules[key]
    return rules


class RoutedRequestContext(flask.ctx.RequestContext):
    """Flask's request context, given the rule connexion's router already chose.

    Flask matches every request's URL against its own ``url_map`` when the context is
    pushed; connexion has matched it against the same operations a moment before. Where the
    bridge passed connexion's choice along (``ROUTED_RULE``), ``match_request``, Flask's hook
    for this, takes it instead of matching a second time.
    """

    def match_request(self) -> None:
        routed = self.request.environ.get(ROUTED_RULE)
        if routed is None:
            super().match_request()
        else:
            self.request.url_rule, self.request.view_args = routed


class UrlAdapterOnDemand:
    """A request's werkzeug URL adapter, bound when something first asks for it.

    A routed request needs none to be dispatched; ``url_for`` and Flask's automatic OPTIONS
    answer still get the adapter Flask would have made.
    """

    def __init__(self, bind: Callable[[], MapAdapter | None]) -> None:
        self._bind = bind
        self._adapter: MapAdapter | None = None

    def __getattr__(self, name: str) -> Any:
        if self._adapter is None:
            self._adapter = self._bind()
        return getattr(self._adapter, name)


class ConnexionRoutedFlask(flask.Flask):
    """The Flask app, dispatching a request connexion routed to the rule connexion chose.

    Flask's own routing stays for everything else, and whenever Flask's configuration makes
    the URL adapter do more than match (``TRUSTED_HOSTS``, ``SERVER_NAME``, host matching).
    connexion creates the Flask instance; ``create_app`` sets its class to this one.
    """

    def create_url_adapter(self, request: flask.Request | None) -> MapAdapter | None:
        if (
            request is not None
            and ROUTED_RULE in request.environ
            and self.config["TRUSTED_HOSTS"] is None
            and self.config["SERVER_NAME"] is None
            and not self.url_map.host_matching
        ):
            bind = functools.partial(flask.Flask.create_url_adapter, self, request)
            return cast(MapAdapter, UrlAdapterOnDemand(bind))
        if request is not None:
            # The adapter must do more than match: Flask routes this request itself.
            request.environ.pop(ROUTED_RULE, None)
        return super().create_url_adapter(request)

    def request_context(self, environ: dict[str, Any]) -> flask.ctx.RequestContext:
        return RoutedRequestContext(self, environ)


class FlaskBridge:
    """The ASGI face of the Flask app, in place of connexion's a2wsgi ``WSGIMiddleware``.

    ``in_thread(scope)`` decides, per request, whether the Flask app runs in a worker thread.
    ``app`` stays the wrapped WSGI app, as connexion's ``add_wsgi_middleware`` expects.
    ``flask_app``'s operations are prepared (``prepare_operations``) before the first request:
    connexion registers them only when it builds its middleware, on the first call.
    """

    def __init__(
        self,
        app: WsgiApp,
        in_thread: Callable[[Scope], bool],
        flask_app: flask.Flask,
        workers: int = 10,
    ) -> None:
        self.app = app
        self.in_thread = in_thread
        self._unprepared: flask.Flask | None = flask_app
        # The Flask app whose own wsgi_app this bridge calls: its steps then run here, on the
        # loop, the teardown after the answer (``_run_then_tear_down``).
        self._flask = flask_app if app == flask_app.wsgi_app else None
        self._rules: dict[tuple[str, str], Rule] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flask")

    def _prepare(self) -> None:
        if self._unprepared is not None:
            prepare_operations(self._unprepared)
            self._rules = operation_rules(self._unprepared)
            self._unprepared = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self._prepare()
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        if self._unprepared is not None:
            self._prepare()
        body = await _read_body(receive)
        environ = cast(dict[str, Any], build_environ(cast(Any, scope), cast(Any, io.BytesIO(body))))
        routed = self._routed_rule(scope)
        if routed is not None:
            environ[ROUTED_RULE] = routed
        if self.in_thread(scope):
            loop = asyncio.get_running_loop()
            run = functools.partial(contextvars.copy_context().run, self._run, environ)
            status, headers, content = await loop.run_in_executor(self._executor, run)
        elif self._flask is not None:
            await self._run_then_tear_down(self._flask, environ, send)
            return
        else:
            status, headers, content = self._run(environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _run_then_tear_down(
        self, app: flask.Flask, environ: dict[str, Any], send: Send
    ) -> None:
        """Flask's ``wsgi_app`` on the loop, its request context popped once the answer is sent.

        The same steps as ``Flask.wsgi_app``: push the request context, dispatch (an exception
        becomes Flask's error response), build the response, pop the context with the error.
        Only the pop, Flask's teardown (its callbacks and signals), waits until the response
        has been handed to the server: it changes nothing in the response, and one client's
        wait no longer includes it.
        """
        ctx = app.request_context(environ)
        error: BaseException | None = None
        try:
            try:
                ctx.push()
                response = app.full_dispatch_request()
            except Exception as exc:
                error = exc
                response = app.handle_exception(exc)
            except BaseException as exc:
                error = exc
                raise
            status, headers, content = self._finish(response, environ)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})
        finally:
            if error is not None and app.should_ignore_error(error):
                error = None
            ctx.pop(error)

    def _routed_rule(self, scope: Scope) -> tuple[Rule, dict[str, str]] | None:
        """The Flask rule and view arguments of the operation connexion routed to, if known."""
        routing = scope.get("extensions", {}).get(ROUTING)
        if routing is None:
            return None
        rule = self._rules.get((routing.get("api_base_path", ""), routing.get("operation_id")))
        params = scope.get("path_params", {})
        if rule is None or params.keys() != rule.arguments:
            return None
        if scope["method"] not in (rule.methods or ()):
            return None
        return rule, dict(params)

    def _run(self, environ: dict[str, Any]) -> Response:
        """Call the WSGI app to the end; bodies here are small and sent whole."""
        return self._finish(self.app, environ)

    @staticmethod
    def _finish(app: WsgiApp, environ: dict[str, Any]) -> Response:
        """Call a WSGI app (or a WSGI response) to the end, its body whole."""
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return chunks.append

        iterable = app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        status, headers = started
        encoded = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        return int(status.split(" ", 1)[0]), encoded, b"".join(chunks)

    def close(self) -> None:
        self._executor.shutdown(wait=False)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
