"""The console on the real gateway: real traffic through it (stub LLM backends, real Triton),
then the page in headless Chromium; its data behind admin keys when auth is on; every worker's
decisions on whichever worker answers; no prompt text in what it keeps."""
from __future__ import annotations

import hashlib
import json

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium, console_errors
from tests.conftest import gateway_config
from tests.gateway_proc import GatewayProcess

PROMPTS = ["Write a Python function that reverses a linked list",
           "What is the capital of France?",
           "Summarise the causes of the First World War in three sentences",
           "Implement quicksort in Rust"]
PII_PROMPT = "Please email the contract to alice.smith@example.com before Friday"
CONSOLE_RESILIENCE = {"retries": 0, "circuit": {"failures": 1, "cooldown_s": 120}}


def chat(url: str, prompt: str, model: str = "auto", key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{url}/v1/chat/completions", json={"model": model, "messages": [
        {"role": "user", "content": prompt}]}, headers=headers, timeout=30)


def traffic(url: str, key: str | None = None) -> None:
    for prompt in PROMPTS + [PII_PROMPT]:
        assert chat(url, prompt, key=key).status_code == 200
    assert chat(url, "hello", model="down", key=key).status_code == 502  # nothing listens: its circuit opens


@pytest.fixture(scope="module")
def console_gateway(stubs, triton, tmp_path_factory):
    config = {**gateway_config(stubs), "resilience": CONSOLE_RESILIENCE}
    proc = GatewayProcess(config, triton.grpc_url, tmp_path_factory.mktemp("console-gw")).start()
    traffic(proc.url)
    yield proc
    proc.stop()


def rows(driver) -> list:
    return [r for r in driver.find_elements(By.CSS_SELECTOR, "#decision-rows tr") if r.is_displayed()]


def test_console_in_a_browser_after_real_traffic(console_gateway, tmp_path):
    with chromium(tmp_path) as driver:
        wait = WebDriverWait(driver, 20)
        driver.get(f"{console_gateway.url}/ui")
        wait.until(lambda d: len(rows(d)) >= len(PROMPTS) + 2)
        backends = {r.find_element(By.CSS_SELECTOR, "td.backend").text for r in rows(driver)}
        assert {"coder", "cheap"} <= backends
        pii_row = next(r for r in rows(driver) if "pii" in r.find_element(By.CSS_SELECTOR, "td.flags").text)

        pii_row.click()  # a row opens its explanation: the /v1/route JSON of that decision
        wait.until(lambda d: d.find_element(By.ID, "explanation").is_displayed())
        wait.until(lambda d: '"EMAIL_ADDRESS"' in d.find_element(By.ID, "explanation-json").text)
        explanation = driver.find_element(By.ID, "explanation-json").text
        assert '"signals"' in explanation and "alice.smith@example.com" not in explanation

        down = (By.CSS_SELECTOR, "#health-rows tr[data-backend='down'] td.circuit")
        wait.until(lambda d: d.find_element(*down).text.startswith("open"))
        assert driver.find_element(By.CSS_SELECTOR, "#health-rows tr[data-backend='cheap'] td.circuit").text == "closed"

        driver.find_element(By.ID, "try-text").send_keys(PII_PROMPT)
        driver.find_element(By.CSS_SELECTOR, "#try-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "try-result").is_displayed())
        marks = driver.find_elements(By.CSS_SELECTOR, "#try-highlighted mark")
        assert ("EMAIL_ADDRESS", "alice.smith@example.com") in [(m.get_attribute("data-type"), m.text) for m in marks]
        assert driver.find_element(By.ID, "try-backend").text in {"cheap", "coder", "strong"}

        wait.until(lambda d: "requests" in d.find_element(By.ID, "totals").text)
        wait.until(lambda d: d.find_element(By.ID, "chart-requests").find_elements(By.CSS_SELECTOR, "polyline"))
        driver.find_element(By.ID, "filter").send_keys("coder")
        wait.until(lambda d: rows(d) and all("coder" in r.text for r in rows(d)))
        driver.find_element(By.ID, "filter").clear()
        driver.execute_script("document.querySelector('#filter').dispatchEvent(new Event('input'))")
        driver.save_screenshot(str(tmp_path / "console.png"))
        assert console_errors(driver) == []


def test_console_keeps_no_prompt_text(console_gateway):
    listing = requests.get(f"{console_gateway.url}/ui/api/decisions", timeout=10).json()["data"]
    assert len(listing) >= len(PROMPTS) + 2
    details = [requests.get(f"{console_gateway.url}/ui/api/decisions/{d['id']}", timeout=10).json() for d in listing]
    text = json.dumps(details)
    assert "alice.smith@example.com" not in text and "reverses a linked list" not in text
    assert all("prompt" not in d for d in details)
    failed = next(d for d in details if d["backend"] == "down")
    assert failed["status"] == 502 and failed["error_code"]


def test_console_api_errors_in_openai_shape(console_gateway):
    missing = requests.get(f"{console_gateway.url}/ui/api/decisions/no-such-id", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = requests.get(f"{console_gateway.url}/ui/api/decisions?limit=zero", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    assert requests.get(f"{console_gateway.url}/ui/static/../app.py", timeout=10).status_code == 404


def test_console_data_needs_an_admin_key_when_auth_is_on(stubs, triton, tmp_path, monkeypatch):
    admin, user = "admin-key-0123456789", "user-key-0123456789"
    config = {**gateway_config(stubs), "auth": {"mode": "on", "keys": [
        {"name": "ops", "sha256": hashlib.sha256(admin.encode()).hexdigest(), "admin": True},
        {"name": "app", "sha256": hashlib.sha256(user.encode()).hexdigest()}]}}
    proc = GatewayProcess(config, triton.grpc_url, tmp_path).start()
    try:
        page = requests.get(f"{proc.url}/ui", timeout=10)
        assert page.status_code == 200 and "semroute console" in page.text  # static: no data in it
        assert requests.get(f"{proc.url}/ui/static/console.js", timeout=10).status_code == 200
        api = f"{proc.url}/ui/api/decisions"
        none = requests.get(api, timeout=10)
        assert none.status_code == 401 and none.json()["error"]["code"] == "invalid_api_key"
        plain = requests.get(api, headers={"Authorization": f"Bearer {user}"}, timeout=10)
        assert plain.status_code == 403 and plain.json()["error"]["code"] == "admin_required"
        assert chat(proc.url, PROMPTS[1], key=user).status_code == 200
        rows = requests.get(api, headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        assert rows.status_code == 200 and len(rows.json()["data"]) == 1
        config_view = requests.get(f"{proc.url}/ui/api/config", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        assert hashlib.sha256(admin.encode()).hexdigest() not in config_view.text
    finally:
        proc.stop()


def test_console_shows_every_worker(stubs, triton, tmp_path):
    config = {**gateway_config(stubs), "resilience": CONSOLE_RESILIENCE}
    proc = GatewayProcess(config, triton.grpc_url, tmp_path, workers=2).start()
    try:
        sent = 24
        for n in range(sent):  # a new connection each: the kernel spreads them over the workers
            assert chat(proc.url, f"{PROMPTS[n % len(PROMPTS)]} ({n})").status_code == 200
        assert chat(proc.url, "hello", model="down").status_code == 502
        for _ in range(6):  # whichever worker answers shows all of them
            listing = requests.get(f"{proc.url}/ui/api/decisions", timeout=10).json()["data"]
            assert len(listing) == sent + 1
            assert len({d["worker"] for d in listing}) == 2, "the kernel sent every request to one worker"
            health = requests.get(f"{proc.url}/ui/api/health", timeout=10).json()
            assert health["workers"] == 2
            down = next(b for b in health["backends"] if b["backend"] == "down")
            # the worker that failed published its circuits with that request's summary: no lag
            assert down["circuit"] == "open" and down["workers_open"] == 1
    finally:
        proc.stop()
