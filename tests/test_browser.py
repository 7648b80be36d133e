"""A real browser on another origin lists and deletes an AI API key on the mock (CORS)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from connexion import FlaskApp

from tests.servers import serve_in_thread

pytestmark = pytest.mark.slow

PAGE = """<!doctype html>
<html><body>
<ul id="keys"></ul>
<p id="status">loading</p>
<script>
const api = new URLSearchParams(location.search).get("api");
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
    const before = await list();
    const response = await fetch(
      `${api}/repo/repo-acme-main/ai/apikey/aikey-acme-openai`, {method: "DELETE", headers});
    const body = await response.json();
    const after = await list();
    document.getElementById("status").textContent =
      `${response.status} ${body.message}: ${before.length} -> ${after.length} keys`;
  } catch (error) {
    document.getElementById("status").textContent = `error: ${error}`;
  }
})();
</script>
</body></html>
"""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "Chromium is not installed (make test installs Debian's chromium where it can)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """The frontend's own origin: a plain static file server on another port."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_page(app: FlaskApp, tmp_path: Path) -> tuple[str, list[str]]:
    """Load the page in headless Chromium; return its status line and listed key ids."""
    from playwright.sync_api import sync_playwright

    (tmp_path / "index.html").write_text(PAGE)
    with serve_in_thread(app) as api, static_site(tmp_path) as site, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(f"{site}/index.html?api={api}")
            page.wait_for_function(
                "document.getElementById('status').textContent !== 'loading'", timeout=15_000
            )
            status = page.inner_text("#status")
            listed = page.eval_on_selector_all("#keys li", "items => items.map(i => i.dataset.id)")
        finally:
            browser.close()
    return status, listed


def test_a_page_on_another_origin_lists_and_deletes_a_key(
    make_app: Callable[..., FlaskApp], tmp_path: Path
) -> None:
    chromium_path()

    status, listed = run_page(make_app(), tmp_path)

    assert status == "200 AI API key deleted successfully: 2 -> 1 keys"
    assert listed == ["aikey-acme-anthropic"]


def test_without_cors_the_browser_refuses_the_same_page(
    make_app: Callable[..., FlaskApp], tmp_path: Path
) -> None:
    chromium_path()

    status, listed = run_page(make_app(cors=False), tmp_path)

    assert status.startswith("error: TypeError")
    assert listed == []
