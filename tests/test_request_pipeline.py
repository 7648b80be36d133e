"""The request pipeline around the handlers: access log, request ids, JSON style, concurrency."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import re
import sqlite3
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
import sqlalchemy as sa
import yaml
from connexion import FlaskApp
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.contract import load_spec
from flashback_contract.mock.access_log import configure_logging
from flashback_contract.mock.app import THREADED_OPERATIONS, control_spec_path
from flashback_contract.mock.bridge import ROUTED_RULE, NoFormRequest, RoutedRequestContext
from flashback_contract.mock.sessions import SESSION_HEADER
from flashback_contract.mock.validators import CompiledParameterValidator
from flashback_contract.store import open_store

from .conftest import OWNER, bearer
from .stores import open_adapter
from .test_sessions import local_client

ACCESS = "flashback_contract.access"
OWN_KEYS = "/organization/org-acme/key"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    loggers = [logging.getLogger(), logging.getLogger("connexion"), logging.getLogger(ACCESS)]
    saved = [(lg, lg.level, lg.handlers[:], lg.propagate) for lg in loggers]
    yield
    for lg, level, handlers, propagate in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate


def test_access_line_names_method_template_operation_status_and_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    response = client.get(OWN_KEYS, headers={**bearer(OWNER), "X-Request-Id": "req-42.a:b"})
    assert response.headers["X-Request-Id"] == "req-42.a:b"
    [line] = access_lines(caplog)
    assert line.startswith("GET /organization/{idOrg}/key getOrgKeys 200 ")
    assert line.endswith(" id=req-42.a:b")
    assert OWNER not in line and "org-acme" not in line


def test_a_request_without_a_sane_id_gets_a_generated_one(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    first = client.get(OWN_KEYS, headers={**bearer(OWNER), "X-Request-Id": "no spaces\tor tabs"})
    second = client.get(OWN_KEYS, headers=bearer(OWNER))
    ids = [first.headers["X-Request-Id"], second.headers["X-Request-Id"]]
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids) and ids[0] != ids[1]
    assert [line.rsplit("id=", 1)[1] for line in access_lines(caplog)] == ids


def test_unrouted_requests_and_errors_are_logged_too(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    client.get("/no/such/path?token=secret")
    client.get(OWN_KEYS)
    unrouted, unauthenticated = access_lines(caplog)
    assert unrouted.startswith("GET /no/such/path - 404 ") and "secret" not in unrouted
    assert unauthenticated.startswith("GET /organization/{idOrg}/key getOrgKeys 401 ")


def test_json_access_lines_for_machines(
    make_app: Callable[..., FlaskApp], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    with make_app(log_format="json").test_client() as client:
        response = client.post(
            "/repo/repo-acme-main/ai/apikey",
            headers=bearer(OWNER),
            json={"name": "ci", "aiType": "OPENAI"},
        )
    [line] = access_lines(caplog)
    record = json.loads(line)
    assert record["method"] == "POST"
    assert record["path"] == "/repo/{repoId}/ai/apikey"
    assert record["operationId"] == "createRepoAiApiKey"
    assert record["status"] == response.status_code
    assert record["requestId"] == response.headers["X-Request-Id"]
    assert record["durationMs"] >= 0 and "forced" not in record
    # Never the body, whose answer carries the key's secret.
    assert response.json()["secret"] not in line


def test_forced_answers_are_named_in_the_access_line(
    make_app: Callable[..., FlaskApp], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    with make_app().test_client() as client:
        client.get(OWN_KEYS, headers={**bearer(OWNER), "Prefer": "code=403"})
        client.get(OWN_KEYS, headers={"Prefer": "code=401"})
        client.get(OWN_KEYS, headers=bearer(OWNER))
    with make_app(fail_rate=1.0).test_client() as client:
        client.get(OWN_KEYS, headers=bearer(OWNER))
    prefer_403, prefer_401, plain, failed = access_lines(caplog)
    assert " 403 " in prefer_403 and prefer_403.endswith(" forced=prefer:code=403")
    assert " 401 " in prefer_401 and prefer_401.endswith(" forced=prefer:code=401")
    assert "forced=" not in plain
    assert " 500 " in failed and failed.endswith(" forced=fail-rate")


def compact(document: object) -> str:
    return json.dumps(document, separators=(",", ":")) + "\n"


def test_every_json_body_is_compact_in_built_order_and_newline_terminated(
    client: TestClient,
) -> None:
    success = client.get(OWN_KEYS, headers=bearer(OWNER))
    refused = client.get(OWN_KEYS)
    forced = client.get(OWN_KEYS, headers={**bearer(OWNER), "Prefer": "code=403"})
    for response in (success, refused, forced):
        assert response.text == compact(response.json())
    assert success.text.startswith('{"success":true,"data":[{"id":')
    assert refused.text.startswith('{"success":false,"message":')


def test_framework_chatter_only_at_debug(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("info")
    client.get(OWN_KEYS)
    assert not [r for r in caplog.records if r.name.startswith("connexion")]
    configure_logging("debug")
    client.get(OWN_KEYS)
    assert [r for r in caplog.records if r.name.startswith("connexion")]


def test_handlers_are_decorated_once_not_on_every_request(
    make_app: Callable[..., FlaskApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """connexion would inspect each handler's signature anew for every request it routes."""
    import connexion.decorators.parameter as parameter

    inspected: list[object] = []
    original = parameter.inspect_function_arguments

    def counting(function: Callable[..., object]) -> tuple[list[str], bool]:
        inspected.append(function)
        return original(function)

    with make_app().test_client() as client:
        assert client.get(OWN_KEYS, headers=bearer(OWNER)).status_code == 200
        monkeypatch.setattr(parameter, "inspect_function_arguments", counting)
        for path in (OWN_KEYS, "/organization/org-globex/key", "/repo/repo-acme-main/ai/apikey"):
            response = client.get(path, headers=bearer(OWNER))
            assert response.status_code in (200, 403), response.text
        created = client.post(
            "/repo/repo-acme-main/ai/apikey",
            headers=bearer(OWNER),
            json={"name": "once", "aiType": "OPENAI"},
        )

    assert created.status_code == 201, created.text
    assert inspected == []


def test_each_operation_builds_its_parsers_validators_and_names_once(
    make_app: Callable[..., FlaskApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """connexion would build URI parsers and a parameter validator from the operation's
    parameters and run every parameter name through its regular expressions on every
    request; after an operation's first request none of it happens again, and each handler
    still gets its own parameters."""
    import connexion.decorators.parameter as parameter
    from connexion.decorators.main import BaseDecorator

    built: list[object] = []
    sanitized: list[str] = []
    uri_parser = BaseDecorator.uri_parser
    sanitize = parameter.sanitized

    def counting_parser(self: BaseDecorator) -> object:
        built.append(self)
        return uri_parser.fget(self)

    def counting_sanitize(name: str) -> str:
        sanitized.append(name)
        return sanitize(name)

    monkeypatch.setattr(BaseDecorator, "uri_parser", property(counting_parser))
    monkeypatch.setattr(parameter, "sanitized", counting_sanitize)
    # The request validation's parameter validators (and their parsers), likewise.
    validator_init = CompiledParameterValidator.__init__

    def counting_validator(self: CompiledParameterValidator, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        validator_init(self, *args, **kwargs)

    monkeypatch.setattr(CompiledParameterValidator, "__init__", counting_validator)

    def three_operations(client: TestClient) -> None:
        own = client.get(OWN_KEYS, headers=bearer(OWNER))
        other = client.get("/organization/org-globex/key", headers=bearer(OWNER))
        keys = client.get("/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER))
        assert {k["orgId"] for k in own.json()["data"]} == {"org-acme"}
        assert other.status_code == 403
        assert {k["repoId"] for k in keys.json()["apiKeys"]} == {"repo-acme-main"}

    with make_app().test_client() as client:
        three_operations(client)
        assert built and sanitized  # the first requests build them
        built.clear()
        sanitized.clear()
        for _ in range(3):
            three_operations(client)

    assert built == []
    assert sanitized == []


def test_operations_that_always_block_run_in_a_thread() -> None:
    assert "generateOrgKey" in THREADED_OPERATIONS  # RSA key generation


async def _first_to_finish(app: FlaskApp, slow: httpx.Request, fast: httpx.Request) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        order: list[str] = []

        async def send(name: str, request: httpx.Request) -> None:
            response = await http.send(request)
            assert response.is_success, response.text  # 200, or 201 for a creation
            order.append(name)

        slow_task = asyncio.create_task(send("slow", slow))
        await asyncio.sleep(0.2)  # the slow request is in flight
        await send("fast", fast)
        first = order[0]
        await slow_task
        return first


def test_a_delayed_request_does_not_hold_up_others(
    make_app: Callable[..., FlaskApp],
) -> None:
    app = make_app()
    slow = httpx.Request(
        "GET", f"http://127.0.0.1{OWN_KEYS}", headers={**bearer(OWNER), "Prefer": "delay=3000"}
    )
    fast = httpx.Request("GET", f"http://127.0.0.1{OWN_KEYS}", headers=bearer(OWNER))
    assert asyncio.run(_first_to_finish(app, slow, fast)) == "fast"


def test_a_write_waiting_for_the_sqlite_lock_does_not_hold_up_reads(tmp_path: Path) -> None:
    database = tmp_path / "store.sqlite3"
    store = open_store(f"sqlite:///{database}")
    app = create_app(Settings(store_url=store.url), store=store)
    write = httpx.Request(
        "POST",
        "http://127.0.0.1/repo/repo-acme-main/ai/apikey",
        headers=bearer(OWNER),
        json={"name": "waits", "aiType": "OPENAI"},
    )
    read = httpx.Request("GET", f"http://127.0.0.1{OWN_KEYS}", headers=bearer(OWNER))
    # Another process holds the write lock: the write waits in a worker thread, reads go on.
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def scenario() -> str:
        release = asyncio.get_running_loop().call_later(1.5, holder.rollback)
        try:
            return await _first_to_finish(app, write, read)
        finally:
            release.cancel()

    try:
        assert asyncio.run(scenario()) == "fast"
    finally:
        holder.close()
        store.close()


@contextmanager
def _postgres_holds(store_url: str, lock: str) -> Iterator[tuple[sa.Engine, threading.Event]]:
    """Another connection, as another instance would, holds the lock ``lock`` takes for 1.5 s;
    an engine on the same database, and an event set once the lock is released."""
    engine = sa.create_engine(sa.make_url(store_url).set(drivername="postgresql+psycopg"))
    holder = engine.connect()
    released = threading.Event()

    def release() -> None:
        holder.rollback()
        released.set()

    try:
        holder.execute(sa.text(lock))
        # Released from a thread: a loop held up by the wait could not release it.
        timer = threading.Timer(1.5, release)
        timer.start()
        try:
            yield engine, released
        finally:
            timer.join()
    finally:
        holder.close()
        engine.dispose()


async def _first_while_postgres_holds(
    app: FlaskApp, store_url: str, lock: str, slow: httpx.Request, fast: httpx.Request
) -> str:
    """``_first_to_finish`` while another instance holds the lock ``lock`` takes."""
    with _postgres_holds(store_url, lock):
        return await _first_to_finish(app, slow, fast)


def test_a_session_call_waiting_for_a_postgresql_lock_does_not_hold_up_others(
    tmp_path: Path,
) -> None:
    """On PostgreSQL the sessions, journal and overrides are round trips to a server other
    instances share: a request whose session lookup waits for another instance's lock waits
    in a worker thread, and a request of the default state answers meanwhile."""
    with open_adapter("postgresql", tmp_path) as store:
        app = create_app(Settings(store_url=store.url), store=store)
        in_session = httpx.Request(
            "GET", f"http://127.0.0.1{OWN_KEYS}", headers={**bearer(OWNER), SESSION_HEADER: "w1"}
        )
        default = httpx.Request("GET", f"http://127.0.0.1{OWN_KEYS}", headers=bearer(OWNER))

        async def scenario() -> str:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                created = await c.send(in_session)  # the session exists from here on
                assert created.status_code == 200, created.text
            # Another instance holds the session list: the session's next use waits for it.
            lock = "LOCK TABLE mock_sessions IN EXCLUSIVE MODE"
            return await _first_while_postgres_holds(app, store.url, lock, in_session, default)

        try:
            assert asyncio.run(scenario()) == "fast"
        finally:
            with local_client(app) as control:  # the session's schema goes with it
                control.delete("/__mock/sessions/w1")


def test_an_override_waiting_for_a_postgresql_row_lock_does_not_hold_up_others(
    tmp_path: Path,
) -> None:
    """Spending an override locks its row; while another instance holds it, the request it
    answers waits in a worker thread, and a request to another operation answers meanwhile."""
    with open_adapter("postgresql", tmp_path) as store:
        app = create_app(Settings(store_url=store.url), store=store)
        with local_client(app) as control:
            added = control.post(
                "/__mock/overrides", json={"operationId": "getOrgKeys", "status": 200}
            )
            assert added.status_code == 201, added.text
        overridden = httpx.Request("GET", f"http://127.0.0.1{OWN_KEYS}", headers=bearer(OWNER))
        other = httpx.Request(
            "GET", "http://127.0.0.1/repo/repo-acme-main/ai/apikey", headers=bearer(OWNER)
        )
        lock = "SELECT id FROM mock_overrides FOR UPDATE"
        first = _first_while_postgres_holds(app, store.url, lock, overridden, other)

        assert asyncio.run(first) == "fast"


def test_a_journal_write_waiting_for_postgresql_does_not_hold_up_others(tmp_path: Path) -> None:
    """A request's journal entry is written before its answer leaves; on PostgreSQL that is a
    round trip to a shared server, made from a worker thread: while another instance holds the
    journal's table locked, the write waits there and an unjournalled request answers."""
    waiting = (
        "SELECT count(*) FROM pg_locks WHERE relation = 'mock_requests'::regclass AND NOT granted"
    )

    async def scenario(
        engine: sa.Engine, released: threading.Event
    ) -> tuple[bool, bool, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            journalled = asyncio.create_task(c.get(OWN_KEYS, headers=bearer(OWNER)))
            for _ in range(100):  # until its journal write waits for the lock
                await asyncio.sleep(0.01)
                with engine.connect() as conn:
                    if released.is_set() or conn.execute(sa.text(waiting)).scalar():
                        break
            control = await c.get("/__mock/overrides")
            assert control.status_code == 200, control.text
            meanwhile = (not released.is_set(), not journalled.done())
            return (*meanwhile, await journalled)

    with open_adapter("postgresql", tmp_path) as store:
        app = create_app(Settings(store_url=store.url), store=store)
        lock = "LOCK TABLE mock_requests IN EXCLUSIVE MODE"
        with _postgres_holds(store.url, lock) as (engine, released):
            still_locked, still_waiting, answer = asyncio.run(scenario(engine, released))

        assert still_locked and still_waiting
        assert answer.status_code == 200, answer.text
        with local_client(app) as client:
            entries = client.get("/__mock/requests").json()["requests"]
        assert [e["operationId"] for e in entries] == ["getOrgKeys"]


def test_a_request_looks_for_a_form_only_in_a_form_body() -> None:
    """JSON and bodiless requests have no form fields and no files, and keep their body
    for the JSON parser; form bodies are still parsed as werkzeug parses them."""
    app = flask.Flask(__name__)
    app.request_class = NoFormRequest
    with app.test_request_context(
        "/", method="POST", data=b'{"name": "n"}', content_type="application/json"
    ):
        assert not flask.request.form and not flask.request.files
        assert flask.request.get_json() == {"name": "n"}
    with app.test_request_context("/", method="GET"):
        assert not flask.request.form and not flask.request.files
        assert flask.request.get_data() == b""
    with app.test_request_context("/", method="POST", data={"a": "1"}):
        assert flask.request.form["a"] == "1"
    upload = (io.BytesIO(b"pem"), "key.pem")
    with app.test_request_context(
        "/", method="POST", data={"a": "1", "file": upload}, content_type="multipart/form-data"
    ):
        assert flask.request.form["a"] == "1"
        assert flask.request.files["file"].read() == b"pem"


CONTROL = "control-secret"
# Bodies connexion accepts, so that every operation reaches Flask (the handler may still refuse).
REACHING_BODIES: dict[str, Any] = {
    "importState": {},
    "issueToken": {"user": "user-acme-owner"},
    "addOverride": {"operationId": "getOrgKeys", "status": 500},
}


def _operations() -> list[tuple[str, str, str, Any]]:
    """(method, path template, operationId, body) of every operation of both APIs."""
    specs = [("", load_spec()), ("/__mock", yaml.safe_load(control_spec_path().read_text()))]
    found = []
    for base, spec in specs:
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if not isinstance(op, dict):
                    continue
                content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
                example = content.get("example")
                if example is None and content.get("examples"):
                    example = next(iter(content["examples"].values()))["value"]
                body = REACHING_BODIES.get(op["operationId"], example)
                found.append((method.upper(), base + path, op["operationId"], body))
    return found


@pytest.mark.parametrize("prefix", ["", "/__session/routing"])
def test_flask_dispatches_every_operation_to_the_rule_werkzeug_would_match(
    make_app: Callable[..., FlaskApp], monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    """Flask takes connexion's routing instead of matching again; for every operation, under
    a session prefix too, the rule and arguments it gets are those werkzeug's own matching
    gives."""
    value = "Org.key-1_x"
    dispatched: dict[str, tuple[bool, Any, Any, Any, Any]] = {}
    match_request = RoutedRequestContext.match_request

    def compare_with_werkzeug(self: RoutedRequestContext) -> None:
        match_request(self)
        rule, args = self.url_adapter.match(return_rule=True)  # type: ignore[union-attr]
        request = self.request
        routed = ROUTED_RULE in request.environ
        endpoint = str(request.endpoint)
        dispatched[endpoint] = (routed, request.url_rule, request.view_args, rule, args)

    monkeypatch.setattr(RoutedRequestContext, "match_request", compare_with_werkzeug)
    operations = _operations()
    with make_app(control_token=CONTROL).test_client() as client:
        for method, template, _, body in operations:
            path = prefix + re.sub(r"\{[^/}]+\}", value, template)
            token = CONTROL if template.startswith("/__mock/") else OWNER
            response = client.request(method, path, json=body, headers=bearer(token))
            assert response.status_code < 500, (path, response.text)

    by_operation = {
        op_id: [entry for endpoint, entry in dispatched.items() if endpoint.endswith("_" + op_id)]
        for _, _, op_id, _ in operations
    }
    assert all(len(entries) == 1 for entries in by_operation.values()), by_operation
    for op_id, [(routed, rule, args, werkzeug_rule, werkzeug_args)] in by_operation.items():
        assert routed, op_id
        assert rule is werkzeug_rule, op_id
        assert args == werkzeug_args, op_id
        assert all(arg == value for arg in args.values()), (op_id, args)


def test_flask_still_checks_trusted_hosts_where_they_are_configured(
    make_app: Callable[..., FlaskApp],
) -> None:
    """Taking connexion's routing skips Flask's URL adapter, not the host check it makes."""
    app = make_app()
    app.app.config["TRUSTED_HOSTS"] = ["mock.example"]
    with app.test_client(base_url="http://mock.example") as trusted:
        assert trusted.get(OWN_KEYS, headers=bearer(OWNER)).status_code == 200
    with app.test_client(base_url="http://elsewhere.example") as untrusted:
        response = untrusted.get(OWN_KEYS, headers=bearer(OWNER))
    assert response.status_code == 400
    assert response.json()["success"] is False


def _asgi_get(app: FlaskApp, path: str, send: Callable[[dict[str, Any]], Any]) -> None:
    """One GET through the whole ASGI stack, as a server would hand it over."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"mock.test"), (b"authorization", f"Bearer {OWNER}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(app(scope, receive, send))


def _noting_teardown(app: FlaskApp) -> list[str]:
    """The events of one request, Flask's teardown noted among them."""
    events: list[str] = []

    @app.app.teardown_request
    def note(error: BaseException | None) -> None:
        events.append(f"teardown {type(error).__name__ if error else None}")

    return events


def test_flask_tears_a_request_down_once_its_answer_is_sent(
    make_app: Callable[..., FlaskApp],
) -> None:
    """On the event loop, Flask's teardown (its callbacks and signals) runs after the whole
    response has been handed to the server: one client's wait does not include it."""
    app = make_app()
    events = _noting_teardown(app)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            events.append(f"start {message['status']}")
        else:
            events.append(
                "body" + (" with keys" if b'"orgId":"org-acme"' in message["body"] else "")
            )

    _asgi_get(app, OWN_KEYS, send)
    assert events == ["start 200", "body with keys", "teardown None"]


def test_flask_tears_a_failed_request_down_too(
    make_app: Callable[..., FlaskApp],
) -> None:
    """An exception in Flask's dispatch becomes the 500 envelope, sent before the teardown."""
    app = make_app()
    events = _noting_teardown(app)
    app.app.before_request(lambda: 1 // 0)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        events.append(message["type"])

    _asgi_get(app, OWN_KEYS, send)
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {"success": False, "message": "Internal server error"}
    # Flask's error handler answered it: the teardown sees no unhandled error, as in Flask.
    assert events == ["http.response.start", "http.response.body", "teardown None"]


def test_flask_tears_a_request_down_when_its_answer_cannot_be_sent(
    make_app: Callable[..., FlaskApp],
) -> None:
    """A send that fails (the connection gone) still pops Flask's request context."""
    app = make_app()
    events = _noting_teardown(app)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise ConnectionResetError("client gone")

    with pytest.raises(Exception) as caught:
        _asgi_get(app, OWN_KEYS, send)
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, ConnectionResetError) for e in chain)
    # starlette's error middleware leaves an error page it could not send (the response had
    # started) unawaited in the traceback: collected here, its warning with it.
    del caught, chain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()
    assert events == ["teardown None"]
    assert flask.has_request_context() is False
