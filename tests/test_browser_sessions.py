"""Two browser contexts in parallel, each in its own session through the base-URL prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from connexion import FlaskApp

from tests.servers import serve_in_thread
from tests.test_browser import chromium_path, static_site

pytestmark = pytest.mark.slow

# The app under test: its API base URL (here with a session prefix) and the key to delete come
# from the query string, as a real app's configuration would.
PAGE = """<!doctype html>
<html><body>
<ul id="keys"></ul>
<p id="status">loading</p>
<script>
const query = new URLSearchParams(location.search);
const api = query.get("api");
const headers = {Authorization: "Bearer demo-acme-owner"};
async function list() {
  const response = await fetch(`${api}/repo/repo-acme-main/ai/apikey`, {headers});
  const body = await response.json();
  document.getElementById("keys").innerHTML =
    body.apiKeys.map(k => `<li data-id="${k.id}">${k.name}</li>`).join("");
  return body.apiKeys;
}
(async () => {
  try {
    await list();
    const response = await fetch(
      `${api}/repo/repo-acme-main/ai/apikey/${query.get("key")}`, {method: "DELETE", headers});
    const body = await response.json();
    const after = await list();
    document.getElementById("status").textContent =
      `${response.status} ${body.message}: ${after.length} keys`;
  } catch (error) {
    document.getElementById("status").textContent = `error: ${error}`;
  }
})();
</script>
</body></html>
"""

KEYS = "/repo/repo-acme-main/ai/apikey"


@pytest.fixture
def servers(make_app: Callable[..., FlaskApp], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(mock URL, site URL): the mock on loopback, the page on another origin."""
    chromium_path()
    (tmp_path / "index.html").write_text(PAGE)
    with serve_in_thread(make_app()) as api, static_site(tmp_path) as site:
        yield api, site


def run_pages(site: str, pages: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """Open one browser context per (api, key) at once; each page's status and listed keys."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            opened = {}
            for api, key in pages.items():
                page = browser.new_context().new_page()
                # Do not wait for the load: the pages' requests run side by side.
                page.goto(f"{site}/index.html?api={api}&key={key}", wait_until="commit")
                opened[api] = page
            results = {}
            for api, page in opened.items():
                page.wait_for_function(
                    "document.getElementById('status').textContent !== 'loading'",
                    timeout=15_000,
                )
                listed = page.eval_on_selector_all(
                    "#keys li", "items => items.map(i => i.dataset.id)"
                )
                results[api] = (page.inner_text("#status"), listed)
        finally:
            browser.close()
    return results


def journal(api: str) -> list[tuple[str, str, int]]:
    entries: list[dict[str, Any]] = httpx.get(f"{api}/__mock/requests").json()["requests"]
    return [(e["method"], e["path"], e["status"]) for e in entries]


def test_two_parallel_browser_contexts_each_see_only_their_own_deletion(
    servers: tuple[str, str],
) -> None:
    mock, site = servers
    w1, w2 = f"{mock}/__session/w1", f"{mock}/__session/w2"

    results = run_pages(site, {w1: "aikey-acme-openai", w2: "aikey-acme-anthropic"})

    assert results[w1] == ("200 AI API key deleted successfully: 1 keys", ["aikey-acme-anthropic"])
    assert results[w2] == ("200 AI API key deleted successfully: 1 keys", ["aikey-acme-openai"])
    default = httpx.get(f"{mock}{KEYS}", headers={"Authorization": "Bearer demo-acme-owner"})
    assert len(default.json()["apiKeys"]) == 2
    assert journal(w1) == [
        ("GET", KEYS, 200),
        ("DELETE", f"{KEYS}/aikey-acme-openai", 200),
        ("GET", KEYS, 200),
    ]
    assert journal(w2) == [
        ("GET", KEYS, 200),
        ("DELETE", f"{KEYS}/aikey-acme-anthropic", 200),
        ("GET", KEYS, 200),
    ]


def test_a_page_shows_the_error_a_test_scripted(servers: tuple[str, str]) -> None:
    mock, site = servers
    w3 = f"{mock}/__session/w3"
    scripted = httpx.post(
        f"{w3}/__mock/overrides",
        json={
            "operationId": "deleteRepoAiApiKey",
            "params": {"apikeyId": "aikey-acme-openai"},
            "status": 500,
            "times": 1,
        },
    )

    results = run_pages(site, {w3: "aikey-acme-openai"})

    assert scripted.status_code == 201
    assert results[w3] == (
        "500 Internal server error: 2 keys",
        ["aikey-acme-anthropic", "aikey-acme-openai"],
    )
    assert httpx.get(f"{w3}/__mock/overrides").json() == {"overrides": []}
