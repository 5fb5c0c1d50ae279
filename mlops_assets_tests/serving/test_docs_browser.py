"""The service's ``/docs`` page in a real browser: Debian's chromium through Playwright, against
the real gunicorn service (``live``: v1 of a real registry).

A person opens ``/docs``, expands ``POST /predict``, clicks "Try it out" and "Execute" with the
schema's example as it stands: the answer must be a 200 with a prediction (issue 11 fixed the
example; this is the click a new user makes first). Opening ``/predict`` in the browser (a GET)
shows a JSON error, not an HTML page. Screenshots go to ``test-artifacts/``.
"""

import json
from pathlib import Path

import pytest

from mlops_assets_tests.helpers import chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as launched:
        yield launched


@pytest.mark.browser
def test_try_it_out_on_predict_gets_a_prediction(live, browser):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{live.url}/docs", wait_until="networkidle")
    operation = page.locator(".opblock-post").filter(has_text="/predict").first
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url.endswith("/predict") and r.request.method == "POST") as sent:
        operation.get_by_role("button", name="Execute").click()
    response = sent.value
    body = response.json()
    assert response.status == 200, body
    assert body["model_version"] == "1" and 1 <= body["duration_minutes"] <= 180, body
    # What the page shows: the server's 200 and the prediction.
    live_response = operation.locator(".live-responses-table .response")
    expect(live_response.locator(".response-col_status")).to_contain_text("200")
    expect(live_response).to_contain_text("duration_minutes")
    page.screenshot(path=ARTIFACTS / "serving-docs-try-it-out.png", full_page=True)


@pytest.mark.browser
def test_get_predict_in_the_browser_is_a_json_405(live, browser):
    page = browser.new_page()
    response = page.goto(f"{live.url}/predict")
    assert response.status == 405
    assert response.headers["content-type"].startswith("application/json")
    body = json.loads(response.text())
    assert "GET" in body["detail"] and "POST" in body["detail"], body
    page.screenshot(path=ARTIFACTS / "serving-get-predict-405.png")
