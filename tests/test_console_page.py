"""The console page in a real browser (headless Chromium), against the console's real HTTP
endpoints with a real ring and real circuit breakers: rows arrive (first load, then live over
SSE), filter, open their explanation; an open circuit shows; the browser logs no error."""
from __future__ import annotations

from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from control.config.file import Config
from control.console.summary import Outcome, summarize
from control.console.web import Console, Sources, add_console
from control.resilience import Breakers
from tests.browser import chromium, console_errors
from tests.thread_server import ThreadedApp

CONFIG = Config.model_validate({
    "backends": [{"name": "cheap", "url": "http://127.0.0.1:9/v1", "model": "c"},
                 {"name": "down", "url": "http://user:s3cretpass@127.0.0.1:9/v1", "model": "d"}],
    "routing": {"default": "cheap"}, "resilience": {"circuit": {"failures": 1, "cooldown_s": 60}}})


def explanation(rule: str, task: str) -> dict:
    return {"backend": "cheap", "rule": rule, "reason": f"{rule} matched",
            "signals": {"domain": {"math": 0.8, "law": 0.2}, "task": {task: 0.9, "other": 0.1},
                        "strong_prob": 0.3, "jailbreak_prob": 0.0, "harmful_prob": 0.0, "pii": []}}


class ConsoleServer(ThreadedApp):
    def __init__(self, console: Console):
        super().__init__()
        self.console = console

    def add_routes(self, app: web.Application) -> None:
        add_console(app, self.console)

    def record(self, summary: dict) -> None:
        self._loop.call_soon_threadsafe(self.console.record, summary)  # the ring lives on the server's loop


def rows(driver) -> list:
    return [r for r in driver.find_elements(By.CSS_SELECTOR, "#decision-rows tr") if r.is_displayed()]


def test_console_page_shows_decisions_health_and_config(tmp_path):
    breakers = Breakers()
    server = ConsoleServer(Console(Sources(config=lambda: CONFIG, breakers=lambda: breakers))).start()
    try:
        server.record(summarize(explanation("task:coding", "coding"), Outcome(backend="cheap", latency_ms=12)))
        server.record(summarize(explanation("default", "open_qa"), Outcome(backend="cheap", fallback_from=("down",))))
        breakers["down"].failure(CONFIG.resilience.circuit, "upstream_error", "connection refused")  # opens (failures: 1)
        with chromium(tmp_path) as driver:
            wait = WebDriverWait(driver, 15)
            driver.get(f"http://127.0.0.1:{server.port}/ui")
            wait.until(lambda d: len(rows(d)) == 2)
            wait.until(lambda d: d.find_element(By.ID, "feed-status").text == "live")
            server.record(summarize(explanation("strong", "math_qa"), Outcome(backend="cheap", cache="exact")))
            wait.until(lambda d: len(rows(d)) == 3)  # over the live feed
            assert "strong" in rows(driver)[0].text and "cache" in rows(driver)[0].text  # newest first

            driver.find_element(By.ID, "filter").send_keys("fallback")
            wait.until(lambda d: len(rows(d)) == 1)
            rows(driver)[0].click()
            wait.until(lambda d: d.find_element(By.ID, "explanation").is_displayed())
            wait.until(lambda d: '"rule": "default"' in d.find_element(By.ID, "explanation-json").text)

            down = (By.CSS_SELECTOR, "#health-rows tr[data-backend='down'] td.circuit")
            wait.until(lambda d: d.find_element(*down).text.startswith("open"))
            cheap = driver.find_element(By.CSS_SELECTOR, "#health-rows tr[data-backend='cheap'] td.circuit")
            assert cheap.text == "closed"
            assert "connection refused" in driver.find_element(By.CSS_SELECTOR, "#health-rows tr[data-backend='down'] .last-error").text

            config = driver.find_element(By.ID, "config-json").get_attribute("textContent")
            assert '"name": "down"' in config and "s3cretpass" not in config
            driver.save_screenshot(str(tmp_path / "console.png"))
            assert console_errors(driver) == []
    finally:
        server.stop()
