"""The UI as a person sees it: headless Chromium (Debian's chromium and chromedriver, driven by
Selenium) opens the stack's Airflow UI after the end-to-end runs (tests/e2e/test_batch_chain.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from e2e.stack import day
from support import chromium

pytestmark = pytest.mark.e2e
DAGS = ("churn_batch_scoring", "churn_features", "churn_monitoring", "churn_streaming", "churn_streaming_stop",
        "churn_training")


@pytest.fixture(scope="module")
def browser():
    session = chromium()
    yield session
    session.quit()


def _page(browser, url: str, expect: list[str], shot: Path, timeout: float = 60) -> str:
    """Open ``url`` and wait until its text shows everything in ``expect`` (the UI renders client-side)."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    deadline = time.monotonic() + timeout
    while True:
        text = browser.find_element(By.TAG_NAME, "body").text
        if all(e in text for e in expect) or time.monotonic() > deadline:
            browser.save_screenshot(str(shot))
            return text
        time.sleep(0.5)


def test_the_ui_lists_the_six_dags_without_import_errors(stack, browser):
    base = f"http://127.0.0.1:{stack['env']['CHURN_AIRFLOW_PORT']}"
    text = _page(browser, f"{base}/dags", ["6 Dags", *DAGS], stack["work"] / "ui-dags.png")
    missing = [d for d in DAGS if d not in text]
    assert not missing and "6 Dags" in text, f"the Dags page does not show {missing}:\n{text[:2000]}"
    home = _page(browser, f"{base}/", ["Health", "Scheduler", "Triggerer", "Dag Processor"], stack["work"] / "ui-home.png")
    assert "Scheduler" in home and "Dag Processor" in home
    assert "Import Error" not in home, f"the home page reports import errors:\n{home[:2000]}"


def test_the_ui_shows_the_backfill_runs_with_their_states(stack, browser):
    base = f"http://127.0.0.1:{stack['env']['CHURN_AIRFLOW_PORT']}"
    expect = [f"backfill__{day(-2)}", f"backfill__{day(-1)}", "manual__"]
    text = _page(browser, f"{base}/dags/churn_batch_scoring/runs", expect, stack["work"] / "ui-runs.png")
    lines = text.splitlines()
    for run in expect:
        assert any(run in line for line in lines), f"the runs page does not show {run}:\n{text[:3000]}"
    # The failed rerun of one date and the successful others, as the test module left them.
    assert "success" in text.lower() and "failed" in text.lower(), text[:3000]
    print(f"\nUI runs page (screenshot {stack['work'] / 'ui-runs.png'}):\n" + "\n".join(lines[:60]))


def test_the_monitoring_report_opens_in_the_browser_with_its_decision_and_plots(stack, browser):
    from selenium.webdriver.common.by import By

    from e2e.stack import DS

    report = stack["lake"] / "monitoring" / "reports" / f"dt={DS}" / "report.html"
    text = _page(browser, report.as_uri(), ["Churn model monitoring", "Decision:"], stack["work"] / "ui-report.png")
    assert f"Churn model monitoring: {DS}" in text and "Decision: no retraining" in text, text[:2000]
    assert "batch" in text and "Realized quality" in text
    # The plots are images the browser decoded, not broken ones.
    sizes = browser.execute_script("return [...document.images].map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
    assert sizes and all(w > 200 and h > 100 for _, w, h in sizes), sizes
    assert browser.find_element(By.ID, "reason").text
