"""`flashback-contract proxy`: real traffic forwarded unchanged, checked, reported and recorded."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from flashback_contract import Settings, create_app
from flashback_contract.conformance.proxy import (
    MAX_HEADER_BYTES,
    SERVER_OPTIONS,
    VIOLATIONS_HEADER,
    Proxy,
    ProxyOptions,
    create_proxy,
    violations_header,
)
from flashback_contract.conformance.validation import Violation
from flashback_contract.contract import load_spec
from tests.conftest import MEMBER, OWNER, bearer
from tests.servers import serve_in_thread
from tests.test_cli_serve import free_port
from tests.test_typescript_client_compat import CLIENT_CALLS

pytestmark = pytest.mark.slow


class Tap:
    """ASGI middleware keeping every answer exactly as the upstream app sent it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers: list[tuple[int, bytes]] = []
        self.headers: list[list[tuple[str, str]]] = []
        self.requests: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests.append(f"{scope['method']} {scope['path']}")
        status = 0
        body = bytearray()

        async def tapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.headers.append(
                    [(n.decode().lower(), v.decode()) for n, v in message.get("headers", [])]
                )
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    self.answers.append((status, bytes(body)))
            await send(message)

        await self.app(scope, receive, tapped)


@contextmanager
def running_mock() -> Iterator[tuple[str, Tap]]:
    tap = Tap(create_app(Settings(store_url="memory://", validate_responses=True)))
    with serve_in_thread(tap) as url:
        yield url, tap


@contextmanager
def running_proxy(upstream: str, **options: Any) -> Iterator[tuple[str, Proxy]]:
    record = options.pop("record", False)
    proxy = create_proxy(ProxyOptions(upstream=upstream, **options), load_spec(), record=record)
    with serve_in_thread(proxy.app, **SERVER_OPTIONS) as url:
        yield url, proxy


def client_like_the_typescript_one(base_url: str) -> httpx.Client:
    """ApiClient.makeRequest sends no Accept, no User-Agent: only what it sets itself."""
    client = httpx.Client(base_url=base_url, timeout=30)
    for name in list(client.headers):
        del client.headers[name]
    return client


def make_request(client: httpx.Client, path: str, method: str, data: Any = None) -> httpx.Response:
    headers = bearer(OWNER)
    content = None
    if data is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(data).encode()
    return client.request(method, f"/{path}", headers=headers, content=content)


# The broken backend: each repository id answers getRepoAiApiKeys with one kind of drift.
GOOD_KEY = {
    "id": "aikey-1",
    "name": "A key",
    "repoId": "repo-x",
    "key": "FB_AI_0001",
    "aiType": "OPENAI",
    "createdAt": "2026-01-01T09:00:00Z",
    "deletedAt": None,
}
BROKEN_TOKEN = "staging-token-do-not-leak"
LEAKED_SECRET = "FB_AI_SECRET_never_in_a_report"
PRIVATE_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEogIBAAKCAQEAnever\n-----END RSA PRIVATE KEY-----\n"
)


def _broken_listing(request: Request) -> Response:
    case = request.path_params["repoId"]
    key = dict(GOOD_KEY)
    if case == "wrong-type":
        key["id"] = 42
    elif case == "missing-required":
        del key["deletedAt"]
    elif case == "extra-field":
        key["lastUsedAt"] = "2026-01-02T09:00:00Z"
    elif case == "enum":
        key["aiType"] = "MISTRAL"
    elif case == "echo":
        return JSONResponse({"success": True, "apiKeys": [], "received": request.headers.items()})
    elif case == "gzipped":
        key["lastUsedAt"] = "2026-01-02T09:00:00Z"
        packed = gzip.compress(json.dumps({"success": True, "apiKeys": [key]}).encode())
        return Response(packed, media_type="application/json", headers={"Content-Encoding": "gzip"})
    elif case == "undocumented-status":
        return JSONResponse({"success": False, "message": "I'm a teapot"}, status_code=418)
    elif case == "wrong-content-type":
        return Response("<html>maintenance</html>", media_type="text/html")
    return JSONResponse({"success": True, "apiKeys": [key]})


async def _slow(_request: Request) -> Response:
    await asyncio.sleep(3)
    return JSONResponse({"success": True, "apiKeys": []})


def _broken_create(_request: Request) -> Response:
    # Documented fields plus one the contract does not declare; the secret must not leak.
    body = {"success": True, "id": "k1", "key": "FB_AI_1", "secret": LEAKED_SECRET, "extra": 1}
    return JSONResponse(body)


def _broken_generate(_request: Request) -> Response:
    # A PEM under a status the contract does not document.
    return Response(PRIVATE_PEM, status_code=201, media_type="application/x-pem-file")


BIG_CHUNK = bytes(range(256)) * 4096  # 1 MiB


def _big_download(_request: Request) -> Response:
    async def chunks() -> Any:
        for _ in range(6):
            yield BIG_CHUNK

    return StreamingResponse(chunks(), media_type="application/x-pem-file")


def broken_backend() -> Tap:
    return Tap(
        Starlette(
            routes=[
                Route("/organization/big/key", _big_download, methods=["POST"]),
                Route("/repo/slow/ai/apikey", _slow),
                Route("/repo/{repoId}/ai/apikey", _broken_listing, methods=["GET"]),
                Route("/repo/{repoId}/ai/apikey", _broken_create, methods=["POST"]),
                Route("/organization/{idOrg}/key", _broken_generate, methods=["POST"]),
            ]
        )
    )


# What each broken case must show in its X-Contract-Violations header.
BROKEN_CASES = {
    "wrong-type": "response 200 /apiKeys/0/id: wrong type (expected string)",
    "missing-required": "response 200 /apiKeys/0/deletedAt: required field missing",
    "extra-field": "response 200 /apiKeys/0/lastUsedAt: undocumented field",
    "enum": "response 200 /apiKeys/0/aiType: value outside the enum (MISTRAL)",
    "undocumented-status": "response 418: undocumented status",
    "wrong-content-type": "response 200: undocumented content type (text/html;",
}


def header_violations(response: httpx.Response) -> list[str]:
    value = response.headers.get(VIOLATIONS_HEADER)
    return [] if value is None else list(json.loads(value))


def test_the_typescript_client_sequence_passes_through_byte_identical_and_clean() -> None:
    with running_mock() as (mock_url, tap), running_proxy(mock_url) as (proxy_url, _):
        client = client_like_the_typescript_one(proxy_url)
        sequence = [("organization/org-acme/key", "POST", None), *[c[:3] for c in CLIENT_CALLS]]
        answers = [make_request(client, path, method, data) for path, method, data in sequence]
        report = client.get("/__proxy/report").json()

    assert [(r.status_code, r.content) for r in answers] == tap.answers
    # The headers too: the upstream's server adds Date and Server, the proxy adds nothing.
    received = [list(r.headers.multi_items()) for r in answers]
    assert [[h for h in got if h[0] not in ("date", "server")] for got in received] == tap.headers
    assert all([h[0] for h in got].count("server") == 1 for got in received)
    assert all(r.is_success for r in answers)
    assert [VIOLATIONS_HEADER in r.headers for r in answers] == [False] * len(answers)
    assert report["violations"] == 0
    seen = {op["operation"]: op for op in report["operations"]}
    assert set(seen) == {
        "generateOrgKey",
        "getOrgKeys",
        "deleteOrgKey",
        "deleteOrgKeys",
        "getRepoAiApiKeys",
        "createRepoAiApiKey",
        "updateRepoAiApiKey",
        "deleteRepoAiApiKey",
    }
    assert all(op["violationCount"] == 0 and op["calls"] == 1 for op in seen.values())
    assert seen["getOrgKeys"]["drift"]["undocumentedFields"] == []


def test_a_refusal_stays_the_upstream_refusal_with_its_exact_body() -> None:
    with running_mock() as (mock_url, tap), running_proxy(mock_url) as (proxy_url, _):
        response = httpx.delete(f"{proxy_url}/organization/org-acme/key", headers=bearer(MEMBER))

    assert response.status_code == 403
    assert tap.answers == [(403, response.content)]
    assert b"Access denied" in response.content
    assert VIOLATIONS_HEADER not in response.headers


def test_a_streamed_pem_download_stays_byte_identical() -> None:
    headers = {**bearer(OWNER), "Accept": "application/x-pem-file"}
    with (
        running_mock() as (mock_url, tap),
        running_proxy(mock_url) as (proxy_url, _),
        httpx.stream("POST", f"{proxy_url}/organization/org-acme/key", headers=headers) as response,
    ):
        streamed = b"".join(response.iter_raw())

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-pem-file"
    assert tap.answers == [(200, streamed)]
    assert streamed.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert VIOLATIONS_HEADER not in response.headers


def test_a_download_past_the_checked_size_streams_through_unchanged() -> None:
    backend = broken_backend()
    with (
        serve_in_thread(backend) as upstream,
        running_proxy(upstream) as (url, _),
        httpx.stream("POST", f"{url}/organization/big/key", headers=bearer(OWNER)) as response,
    ):
        received = b"".join(response.iter_raw())

    assert response.status_code == 200
    assert received == BIG_CHUNK * 6
    assert backend.answers == [(200, received)]


def test_requests_go_upstream_with_their_headers_less_the_hop_by_hop_ones() -> None:
    sent = {
        **bearer(BROKEN_TOKEN),
        "X-Request-Id": "r-1",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "for the proxy only",
        "Keep-Alive": "timeout=5",
    }
    with serve_in_thread(broken_backend()) as upstream, running_proxy(upstream) as (url, _):
        client = client_like_the_typescript_one(url)
        received = dict(client.get("/repo/echo/ai/apikey", headers=sent).json()["received"])

    assert received["authorization"] == f"Bearer {BROKEN_TOKEN}"
    assert received["x-request-id"] == "r-1"
    assert received["host"] == upstream.removeprefix("http://")
    for hop in ("x-hop", "keep-alive"):
        assert hop not in received
    # Nothing the client did not send: no User-Agent, Accept or Accept-Encoding of the proxy's.
    assert "user-agent" not in received and "accept-encoding" not in received


def test_a_compressed_answer_is_checked_and_goes_back_compressed() -> None:
    backend = broken_backend()
    with (
        serve_in_thread(backend) as upstream,
        running_proxy(upstream) as (url, _),
        httpx.stream("GET", f"{url}/repo/gzipped/ai/apikey", headers=bearer(OWNER)) as response,
    ):
        received = b"".join(response.iter_raw())

    assert response.headers["content-encoding"] == "gzip"
    assert backend.answers == [(200, received)]
    assert header_violations(response) == ["response 200 /apiKeys/0/lastUsedAt: undocumented field"]


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_each_kind_of_drift_is_named_in_the_header_of_its_response(case: str) -> None:
    with serve_in_thread(broken_backend()) as upstream, running_proxy(upstream) as (url, _):
        response = httpx.get(f"{url}/repo/{case}/ai/apikey", headers=bearer(BROKEN_TOKEN))

    violations = header_violations(response)
    assert any(v.startswith(BROKEN_CASES[case]) for v in violations), violations


def test_strict_refuses_a_violating_request_without_sending_it_upstream() -> None:
    backend = broken_backend()
    with serve_in_thread(backend) as upstream, running_proxy(upstream, strict=True) as (url, _):
        response = httpx.post(
            f"{url}/repo/repo-x/ai/apikey", headers=bearer(BROKEN_TOKEN), json={"name": 3}
        )
        report = httpx.get(f"{url}/__proxy/report").json()

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert "/name: wrong type (expected string)" in response.json()["message"]
    assert "/aiType: required field missing" in response.json()["message"]
    assert backend.requests == []
    assert report["operations"][0]["unanswered"] == {"refused (--strict)": 1}
    assert sorted(json.loads(response.headers[VIOLATIONS_HEADER])) == [
        "request /aiType: required field missing",
        "request /name: wrong type (expected string)",
    ]


def test_strict_replaces_a_violating_response_with_a_502_envelope() -> None:
    with (
        serve_in_thread(broken_backend()) as upstream,
        running_proxy(upstream, strict=True) as (url, _),
    ):
        response = httpx.get(f"{url}/repo/wrong-type/ai/apikey", headers=bearer(BROKEN_TOKEN))

    assert response.status_code == 502
    assert response.json() == {
        "success": False,
        "message": "Response violates the contract: "
        "response 200 /apiKeys/0/id: wrong type (expected string)",
    }


def test_an_unreachable_upstream_is_a_502_and_the_proxy_keeps_serving() -> None:
    with running_proxy(f"http://127.0.0.1:{free_port()}") as (url, _):
        first = httpx.get(f"{url}/repo/r/ai/apikey", headers=bearer(OWNER))
        second = httpx.get(f"{url}/repo/r/ai/apikey", headers=bearer(OWNER))
        report = httpx.get(f"{url}/__proxy/report").json()

    assert [first.status_code, second.status_code] == [502, 502]
    assert first.json()["success"] is False
    assert first.json()["message"].startswith("Upstream unreachable")
    assert report["operations"][0]["unanswered"] == {"upstream unreachable (ConnectError)": 2}
    assert report["operations"][0]["statuses"] == {}


def test_an_upstream_past_the_timeout_is_a_504() -> None:
    with (
        serve_in_thread(broken_backend()) as upstream,
        running_proxy(upstream, timeout=0.2) as (url, _),
    ):
        response = httpx.get(f"{url}/repo/slow/ai/apikey", headers=bearer(OWNER))

    assert response.status_code == 504
    assert response.json() == {"success": False, "message": "Upstream timed out after 0.2 s"}


def test_a_browser_preflight_is_answered_as_serve_answers_it_and_not_forwarded() -> None:
    backend = broken_backend()
    with serve_in_thread(backend) as upstream, running_proxy(upstream) as (url, _):
        response = httpx.options(
            f"{url}/repo/repo-x/ai/apikey",
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        listed = httpx.get(
            f"{url}/repo/extra-field/ai/apikey",
            headers={**bearer(BROKEN_TOKEN), "Origin": "http://localhost:5173"},
        )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert listed.headers["access-control-allow-origin"] == "*"
    # The browser app can read the violations of a cross-origin answer.
    assert VIOLATIONS_HEADER.lower() in listed.headers["access-control-expose-headers"].lower()
    assert backend.requests == ["GET /repo/extra-field/ai/apikey"]


def test_the_violations_header_stays_compact_and_bounded() -> None:
    many = [
        Violation("response", "wrong type", f"/field{i}", "expected string", 200)
        for i in range(500)
    ]

    value = violations_header(many)

    assert len(value) <= MAX_HEADER_BYTES
    shown = json.loads(value)
    assert shown[0] == "response 200 /field0: wrong type (expected string)"
    assert shown[-1].startswith("... ") and shown[-1].endswith(" more")
    assert " " not in value.replace('" ', "").split('","')[0][:2]  # compact separators
    assert '","' in value


def test_violations_of_one_field_in_every_item_of_a_list_count_as_one_in_the_header() -> None:
    same = [
        Violation("response", "wrong type", f"/apiKeys/{i}/id", "expected string", 200)
        for i in range(3)
    ]

    assert json.loads(violations_header(same)) == [
        "response 200 /apiKeys/0/id: wrong type (expected string)"
    ]


def start_proxy_command(upstream: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flashback_contract",
            "proxy",
            "--upstream",
            upstream,
            "--port",
            str(port),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/__proxy/report", timeout=1)
            return process, url
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"proxy did not start: {process.communicate()[0]}")


def test_the_proxy_command_reports_every_drift_by_operation_and_exits_1(tmp_path: Path) -> None:
    markdown, as_json, junit = tmp_path / "r.md", tmp_path / "r.json", tmp_path / "j.xml"
    with serve_in_thread(broken_backend()) as upstream:
        process, url = start_proxy_command(
            upstream, "--report", str(markdown), "--report", str(as_json), "--junit", str(junit)
        )
        auth = bearer(BROKEN_TOKEN)
        for case in BROKEN_CASES:
            httpx.get(f"{url}/repo/{case}/ai/apikey", headers=auth)
        created = httpx.post(
            f"{url}/repo/repo-x/ai/apikey", headers=auth, json={"name": "n", "aiType": "OPENAI"}
        )
        generated = httpx.post(f"{url}/organization/org-x/key", headers=auth)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)

    assert process.returncode == 1, output
    assert created.json()["secret"] == LEAKED_SECRET  # the client gets the answer unchanged
    assert generated.text == PRIVATE_PEM
    report = json.loads(as_json.read_text())
    listing = next(op for op in report["operations"] if op["operation"] == "getRepoAiApiKeys")
    kinds = {(g["kind"], g["where"]) for g in listing["violations"]}
    assert kinds >= {
        ("wrong type", "/apiKeys/*/id"),
        ("required field missing", "/apiKeys/*/deletedAt"),
        ("undocumented field", "/apiKeys/*/lastUsedAt"),
        ("value outside the enum", "/apiKeys/*/aiType"),
        ("undocumented status", ""),
        ("undocumented content type", ""),
    }
    drift = listing["drift"]
    assert {
        "field": "/apiKeys/*/lastUsedAt",
        "seenIn": 1,
        "status": 200,
        "mediaType": "application/json",
        "responses": 4,
    } in drift["undocumentedFields"]
    assert drift["undocumentedStatuses"] == [{"status": 418, "count": 1}]
    assert [e["values"] for e in drift["enumValuesOutside"]] == [["MISTRAL"]]
    assert [m["field"] for m in drift["requiredFieldsMissing"]] == ["/apiKeys/*/deletedAt"]

    text = markdown.read_text()
    assert "## `getRepoAiApiKeys` `GET /repo/{repoId}/ai/apikey`" in text
    for kind in (
        "wrong type",
        "required field missing",
        "undocumented field",
        "value outside the enum",
        "undocumented status",
        "undocumented content type",
    ):
        assert kind in text
    assert (
        "undocumented field `/apiKeys/*/lastUsedAt` in 1 of 4 responses of getRepoAiApiKeys 200"
        in text
    )

    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    failure = cases["getRepoAiApiKeys (GET /repo/{repoId}/ai/apikey)"].find("failure")
    assert failure is not None and failure.text is not None
    for expected in BROKEN_CASES.values():
        assert expected.split(": ", 1)[1].split(" (")[0] in failure.text
    assert cases["createRepoAiApiKey (POST /repo/{repoId}/ai/apikey)"].find("failure") is not None

    # Redaction: the token, the secret and the private key are in no log and no report.
    for written in (output, text, as_json.read_text(), junit.read_text()):
        assert BROKEN_TOKEN not in written
        assert LEAKED_SECRET not in written
        assert "PRIVATE KEY" not in written
    assert "authorization: [filtered]" in text.lower()


def test_the_proxy_command_exits_0_when_nothing_disagrees(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    with running_mock() as (mock_url, _):
        process, url = start_proxy_command(
            mock_url, "--junit", str(tmp_path / "j.xml"), "--record", str(seed)
        )
        response = httpx.get(f"{url}/organization/org-acme/key", headers=bearer(OWNER))
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)

    assert response.status_code == 200
    assert process.returncode == 0, output
    assert "1 call(s), 1 operation(s), 0 violation(s)." in output
    assert OWNER not in output
    cases = list(ET.parse(tmp_path / "j.xml").getroot().iter("testcase"))
    assert [c.get("name") for c in cases] == ["getOrgKeys (GET /organization/{idOrg}/key)"]
    assert cases[0].find("failure") is None
    # The recorded OWNER's generated token is printed and written into the seed.
    (owner,) = yaml.safe_load(seed.read_text())["users"]
    assert owner["org"] == "org-acme" and owner["role"] == "OWNER"
    assert f"{owner['token']}" in output


def test_a_recorded_seed_gives_a_new_mock_the_same_listed_keys(tmp_path: Path) -> None:
    seed = tmp_path / "recorded.yaml"
    with running_mock() as (mock_url, _), running_proxy(mock_url, record=True) as (url, proxy):
        client = httpx.Client(base_url=url, headers=bearer(OWNER), timeout=30)
        client.get("/organization/org-acme/key")
        client.get("/repo/repo-acme-main/ai/apikey")
        client.post("/repo/repo-acme-main/ai/apikey", json={"name": "recorded", "aiType": "AWS"})
        client.post("/organization/org-acme/key", headers={"Accept": "application/x-pem-file"})
        client.delete("/organization/org-acme/key/orgkey-acme-2")
        client.put("/repo/repo-acme-main/ai/apikey/aikey-acme-openai", json={"name": "renamed"})
        org_keys = client.get("/organization/org-acme/key").json()["data"]
        ai_keys = client.get("/repo/repo-acme-main/ai/apikey").json()["apiKeys"]
    proxy.finish([], None, seed)

    recorded = yaml.safe_load(seed.read_text())
    token = next(u["token"] for u in recorded["users"] if u["org"] == "org-acme")
    assert [u["role"] for u in recorded["users"]] == ["OWNER"]
    assert {"id": "repo-acme-main", "org": "org-acme", "name": "repo-acme-main"} in recorded[
        "repositories"
    ]
    fresh = create_app(Settings(store_url="memory://", seed_file=seed))
    with fresh.test_client() as again:
        listed_org_keys = again.get("/organization/org-acme/key", headers=bearer(token)).json()
        listed_ai_keys = again.get("/repo/repo-acme-main/ai/apikey", headers=bearer(token)).json()

    assert listed_org_keys["data"] == org_keys
    assert listed_ai_keys["apiKeys"] == ai_keys
    assert "secret" not in seed.read_text()
    assert "PRIVATE KEY" not in seed.read_text()


def test_a_repository_seen_only_with_an_unknown_caller_goes_to_a_placeholder_organization(
    tmp_path: Path,
) -> None:
    with running_mock() as (mock_url, _), running_proxy(mock_url, record=True) as (url, proxy):
        httpx.get(f"{url}/repo/repo-acme-main/ai/apikey", headers=bearer(MEMBER))
    recorded = proxy.recorder.seed() if proxy.recorder else {}

    assert recorded["repositories"] == [
        {"id": "repo-acme-main", "org": "org-recorded", "name": "repo-acme-main"}
    ]
    assert [o["id"] for o in recorded["organizations"]] == ["org-recorded"]
    assert len(recorded["aiApiKeys"]) == 2
