"""The dashboard in real headless Chromium (Debian's, driven by Playwright) against a real server on
the real broker: every page loads without console errors, the collections table pages, the lag chart
follows an ingest, the search box finds the expected top hit, and the API key is asked for and used.
A screenshot of each page goes to ``build/dashboard/``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from producers import VectorProducer
from tests.api.conftest import Running, unique
from vectorizer.api.routes.dashboard import FILES

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
PAGES = ("overview", "collections", "snapshots", "dead-letters", "search")
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # bypass_csp: Playwright evaluates its waiting conditions as strings, which the page's policy forbids.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    context.close()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _rows(page: Page, table: str) -> list[list[str]]:
    return page.eval_on_selector_all(f"#{table} tbody tr",
                                     "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def test_every_page_collections_paging_lag_chart_and_search(server: Running, page: Page) -> None:
    prefix = unique("dash")
    names = [f"{prefix}_{i:02d}" for i in range(60)]
    rng = np.random.default_rng(5)
    vectors = rng.random((200, 8), dtype=np.float32)
    with VectorProducer(server.settings) as producer:  # 60 collections in one go, then 200 points in one of them
        for name in names:
            producer.create_collection(name, 8, "l2")
        producer.wait_applied(producer.upsert(names[0], list(range(200)), vectors,
                                              [{"n": i} for i in range(200)]), timeout=60)
    page.goto(f"{server.url}/dashboard#overview")
    page.wait_for_function("document.getElementById('state').textContent === 'ready'")
    page.wait_for_function("Number(document.getElementById('chart-lag').dataset.points) >= 2")
    applied = int(_rows(page, "partitions")[0][1])

    # An ingest: the applied offset shown and the lag chart move on.
    with VectorProducer(server.settings) as producer:
        producer.wait_applied(producer.upsert(names[1], [1, 2], vectors[:2]), timeout=60)
    drawn = int(page.get_attribute("#chart-lag", "data-points") or 0)
    shown = "Number(document.querySelector('#partitions tbody td:nth-child(2)').textContent)"
    page.wait_for_function(f"{shown} > {applied}")
    page.wait_for_function(f"Number(document.getElementById('chart-lag').dataset.points) > {drawn}")
    page.wait_for_function("Number(document.getElementById('chart-ingest').dataset.points) >= 1")
    _shot(page, "overview")

    page.goto(f"{server.url}/dashboard#collections")
    page.fill("#c-prefix", prefix)
    page.wait_for_function("document.getElementById('c-range').textContent === '1–50 of 60'")
    rows = _rows(page, "c-table")
    assert [r[0] for r in rows] == names[:50]
    assert rows[0][1:5] == ["dynamic", "200", "8", "Euclid"]
    _shot(page, "collections")
    page.click("#c-next")
    page.wait_for_function("document.getElementById('c-range').textContent === '51–60 of 60'")
    assert [r[0] for r in _rows(page, "c-table")] == names[50:]

    page.goto(f"{server.url}/dashboard#snapshots")
    page.click("#take-snapshot")
    page.wait_for_function("document.querySelectorAll('#snap-table tbody tr').length >= 1")
    page.click("#run-verify")
    page.wait_for_function("document.getElementById('verify-result').textContent.startsWith('OK')")
    _shot(page, "snapshots")

    with VectorProducer(server.settings) as producer:  # a record the projection refuses: a dead letter
        missing = unique("nope")
        producer.upsert(missing, [1], vectors[:1])
    page.goto(f"{server.url}/dashboard#dead-letters")
    page.wait_for_function(f"[...document.querySelectorAll('#dl-table td')].some(td => td.textContent === '{missing}')"
                           " || (location.reload(), false)", polling=1000)
    assert any(r[1] == missing and r[2] == "rejected" for r in _rows(page, "dl-table"))
    _shot(page, "dead-letters")

    page.goto(f"{server.url}/dashboard#search")
    page.fill("#q-collection", names[0])
    page.select_option("#q-mode", "vector")
    page.fill("#q-input", json.dumps(vectors[17].tolist()))
    page.click("#search-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#hits tbody tr').length > 0")
    top = _rows(page, "hits")[0]
    assert top[1] == "17" and json.loads(top[3]) == {"n": 17}
    _shot(page, "search")
    # Traffic while the overview is open: its charts draw it (the README's screenshot).
    page.goto(f"{server.url}/dashboard#overview")
    for round_ in range(4):
        drawn = int(page.get_attribute("#chart-search", "data-points") or 0)
        with VectorProducer(server.settings) as producer:
            producer.upsert(names[2], list(range(round_ * 100, round_ * 100 + 100)), rng.random((100, 8), np.float32))
        for q in vectors[:10]:
            assert server.http.post(f"/collections/{names[0]}/points/query",
                                    json={"query": q.tolist(), "limit": 5}).status_code == 200
        page.wait_for_function(f"Number(document.getElementById('chart-search').dataset.points) > {drawn}")
    _shot(page, "overview-with-traffic")
    assert page.problems == []  # type: ignore[attr-defined]


def test_text_search_box(server: Running, page: Page) -> None:
    name = unique("dashtext")
    http = server.http
    assert http.put(f"/collections/{name}", json={"vectors": {"size": 512, "distance": "Cosine"},
                                                  "embedder": {"name": "hashing", "dimension": 512}}).status_code == 200
    answer = http.put(f"/collections/{name}/points/text", params={"wait": "true"}, json={"points": [
        {"id": 1, "text": "recovery loads the newest snapshot and replays the log"},
        {"id": 2, "text": "payload indexes make selective filters fast"}]})
    assert answer.status_code == 200, answer.text
    page.goto(f"{server.url}/dashboard#search")
    page.fill("#q-collection", name)
    page.fill("#q-input", "selective filters")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#hits tbody tr').length > 0")
    assert _rows(page, "hits")[0][1] == "2"
    assert page.problems == []  # type: ignore[attr-defined]


def test_the_key_is_asked_for_and_sent(make_server: Callable[..., Running], page: Page) -> None:
    key = "dashboard-key-0123456789abcdef"
    running = make_server(api_key=key)
    name = unique("dashkey")
    assert running.http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}}).status_code == 200
    with httpx.Client(base_url=running.url, timeout=30) as anonymous:  # the files, exactly, and nothing else
        for path in FILES:
            assert anonymous.get(path).status_code == 200, path
        for method, path in (("GET", "/dashboard/"), ("GET", "/dashboard/x.js"), ("POST", "/dashboard"),
                             ("GET", "/vectorizer/status"), ("GET", "/dashboard/../vectorizer/status")):
            assert anonymous.request(method, path).status_code == 401, (method, path)
    page.goto(f"{running.url}/dashboard#collections")  # the page itself loads without a key
    page.wait_for_selector("#key-form", state="visible")
    assert "401" in (page.text_content("#error") or "") and _rows(page, "c-table") == []
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")
    page.fill("#c-prefix", name)
    page.wait_for_function("document.querySelectorAll('#c-table tbody tr').length === 1")
    assert _rows(page, "c-table")[0][0] == name
    assert page.evaluate("sessionStorage.getItem('vectorizer.api-key')") == key
