"""The opinion explorer in a real headless browser (Debian's chromium driven by Selenium) against a real Serve app.

Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver (``make install`` installs both with
apt-get), so Selenium Manager never tries to download a browser: there is no network at test time.
"""

import csv
import io
import json
import os
from pathlib import Path

import pytest
import requests

from .test_app import _free_port, deploy

pytestmark = pytest.mark.ray

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# The README's screenshot is rewritten only on request: a test run leaves tracked files alone.
#   DEMOSCOPE_SCREENSHOT=docs/explorer.png pytest tests/serve/test_explorer_browser.py -k bars
SCREENSHOT_ENV = "DEMOSCOPE_SCREENSHOT"
QUESTION = "How much, if at all, do you worry about climate change?"
OPTIONS = ["A great deal", "Some", "Not too much", "Not at all"]
GROUPS = [("POLPARTY", "Democrat"), ("POLPARTY", "Republican"), ("POLIDEOLOGY", "Liberal")]
HUMAN = [50, 30, 10, 10]
MAX_ITEMS = 4  # 3 groups x 2 adapters = 6 items: the page must split them into 2 requests
TOL = 1e-6  # the same prompts batched differently (padding) differ in the 8th digit


def _missing() -> str | None:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return f"{CHROMIUM} or {CHROMEDRIVER} is missing: `make install` installs Debian's chromium and chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `make install` installs the dev extra"
    return None


if _missing():
    pytest.skip(_missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server(local_ray, random_adapter):
    from ray import serve

    url = deploy(_free_port(), adapters={"subpop": str(random_adapter)}, max_items=MAX_ITEMS, replica_cpus=0.5,
                 max_replicas=1)
    yield url
    serve.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never look for or download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def wait(driver, condition, seconds: float = 120):
    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(condition)


def by_id(driver, element_id: str):
    return driver.find_element(By.ID, element_id)


def type_into(driver, element_id: str, text: str) -> None:
    field = by_id(driver, element_id)
    field.clear()
    field.send_keys(text)


def check_group(driver, attribute: str, group: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f'#groups input[data-attribute="{attribute}"][data-group="{group}"]')
    if not box.is_selected():
        box.send_keys(Keys.SPACE)  # the keyboard, as a keyboard user would


def items(adapter: str | None, human: dict | None = None) -> list[dict]:
    return [{"question": QUESTION, "options": OPTIONS, "adapter": adapter,
             "subpopulation": {"attribute": a, "group": g, "steering": "QA"},
             **({"human": human[g]} if human and g in human else {})} for a, g in GROUPS]


@pytest.fixture(scope="module")
def page(server, browser):
    browser.get(f"{server}/")
    wait(browser, lambda d: "tiny:llama" in by_id(d, "model-name").text)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#groups input")) == 23)  # 22 and "Everyone"
    return browser


def test_a_question_shows_the_apis_distributions_as_bars(page, server, tmp_path):
    type_into(page, "question", QUESTION)
    type_into(page, "options", "\n".join(OPTIONS))
    for attribute, group in GROUPS:
        check_group(page, attribute, group)
    type_into(page, "human", "Democrat = " + " ".join(map(str, HUMAN)))
    by_id(page, "run").send_keys(Keys.ENTER)
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cards .card")) == len(GROUPS))
    assert by_id(page, "ask-status").text == "Done: 2 of 2 requests, 6 items."  # split by the server's max_items

    human = {"Democrat": HUMAN}
    expected = {}
    for adapter, label in ((None, "base"), ("subpop", "subpop")):
        answer = requests.post(f"{server}/v1/opinions", json={"items": items(adapter, human)}, timeout=120).json()
        for (attribute, group), result in zip(GROUPS, answer["results"]):
            expected[f"{attribute}/{group}", label] = result
    for card in page.find_elements(By.CSS_SELECTOR, "#cards .card"):
        group = card.get_attribute("data-group")
        bars = card.find_elements(By.CSS_SELECTOR, ".bar-row")
        humans = group == "POLPARTY/Democrat"
        assert len(bars) == len(OPTIONS) * (3 if humans else 2)
        for row in bars:
            bar = row.find_element(By.CSS_SELECTOR, ".bar")
            adapter, share = bar.get_attribute("data-adapter"), float(bar.get_attribute("data-share"))
            option = OPTIONS.index(row.find_element(By.XPATH, "..").get_attribute("aria-label"))
            if adapter == "humans":
                want = HUMAN[option] / sum(HUMAN)
            else:
                want = expected[group, adapter]["distribution"][option]
            assert share == pytest.approx(want, abs=TOL), (group, adapter, option)
            assert row.find_element(By.CSS_SELECTOR, ".pct").text == f"{100 * want:.1f}%"
            width = page.execute_script("return arguments[0].getBoundingClientRect().width / "
                                        "arguments[0].parentElement.getBoundingClientRect().width", bar)
            assert width == pytest.approx(want, abs=0.01)  # the bar is as long as the number says
        distances = card.find_elements(By.CSS_SELECTOR, ".wasserstein")
        assert len(distances) == (2 if humans else 0)
        for element in distances:
            want = expected[group, element.get_attribute("data-adapter")]["wasserstein"]
            assert float(element.get_attribute("data-wasserstein")) == pytest.approx(want, abs=TOL)
            assert f"{want:.3f}" in element.text
    # base against the SubPOP-tuned adapter: the bars differ
    democrat = "POLPARTY/Democrat"
    assert expected[democrat, "base"]["distribution"] != expected[democrat, "subpop"]["distribution"]

    # The page as the README shows it: the form and the bars, 1280 px wide.
    page.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    page.set_window_size(1280, min(page.execute_script("return document.documentElement.scrollHeight"), 2400))
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "explorer.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    page.set_window_size(1280, 900)


def test_an_api_error_shows_next_to_the_field_at_fault(page):
    type_into(page, "options", "Only one option")
    by_id(page, "run").click()
    message = wait(page, lambda d: by_id(d, "options-error").text, 30)
    assert "options" in message and "at least 2" in message
    assert by_id(page, "options").get_attribute("aria-invalid") == "true"
    assert page.switch_to.active_element == by_id(page, "options")  # focus moves to the field to fix
    type_into(page, "options", "\n".join(OPTIONS))
    type_into(page, "human", "Democrat = 1 2")  # 2 shares for 4 options: the API's 422 names `human`
    by_id(page, "run").click()
    message = wait(page, lambda d: by_id(d, "human-error").text, 30)
    assert "human has 2 entries" in message and not by_id(page, "options-error").text
    type_into(page, "human", "")


def blob_text(driver, link_id: str) -> str:
    return driver.execute_async_script(
        "const done = arguments[1]; fetch(document.getElementById(arguments[0]).href)"
        ".then((r) => r.text()).then(done, (e) => done('failed: ' + e));", link_id)


def test_a_questionnaire_gives_a_table_and_downloads(page, server, tmp_path):
    upload = tmp_path / "questionnaire.csv"
    with upload.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "options", "attribute", "group", "human"])
        writer.writerow([QUESTION, "|".join(OPTIONS), "POLPARTY", "Republican", "10|20|30|40"])
        writer.writerow(["Is the economy, getting better?", "Better|Worse", "", "", ""])  # asks the 3 chosen groups
    by_id(page, "qn-file").send_keys(str(upload))
    by_id(page, "qn-run").click()
    wait(page, lambda d: not by_id(d, "qn-results").get_attribute("hidden"))
    rows = page.find_elements(By.CSS_SELECTOR, "#qn-table tbody tr")
    assert len(rows) == (1 + len(GROUPS)) * 2  # (1 + 3 groups) x (base, subpop)
    assert by_id(page, "qn-status").text == "Done: 2 of 2 requests, 8 items."

    table = json.loads(blob_text(page, "download-json"))
    downloaded = list(csv.DictReader(io.StringIO(blob_text(page, "download-csv"))))
    assert len(table) == len(downloaded) == len(rows)
    first = table[0]
    assert (first["group"], first["adapter"], first["human"]) == ("Republican", None, [10, 20, 30, 40])
    direct = requests.post(f"{server}/v1/opinions", timeout=60, json={"items": [
        {"question": QUESTION, "options": OPTIONS, "human": [10, 20, 30, 40],
         "subpopulation": {"attribute": "POLPARTY", "group": "Republican"}}]}).json()["results"][0]
    assert first["distribution"] == pytest.approx(direct["distribution"], abs=TOL)
    assert first["wasserstein"] == pytest.approx(direct["wasserstein"], abs=TOL)
    assert downloaded[0]["distribution"] == "|".join(str(x) for x in first["distribution"]) or \
        [float(x) for x in downloaded[0]["distribution"].split("|")] == pytest.approx(first["distribution"])
    assert downloaded[-1]["question"] == "Is the economy, getting better?" and downloaded[-1]["adapter"] == "subpop"
    cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells[:4] == ["2", QUESTION, "Republican (POLPARTY)", "base"] and cells[6] == f"{direct['wasserstein']:.3f}"

    bad = tmp_path / "bad.csv"
    bad.write_text("question,choices\nWhy?,a|b\n")
    by_id(page, "qn-file").send_keys(str(bad))
    by_id(page, "qn-run").click()
    assert "no \"options\" column" in wait(page, lambda d: by_id(d, "qn-error").text)


def test_it_fits_a_phone_screen(page):
    page.set_window_size(390, 844)
    try:
        overflow = page.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px wider than a 390 px screen"
    finally:
        page.set_window_size(1280, 900)


def test_with_a_token_the_page_asks_for_it(local_ray, server, browser, monkeypatch):
    from ray import serve

    monkeypatch.setenv("DEMOSCOPE_API_TOKEN", "s3cret")  # read when the application is built
    url = deploy(int(server.rsplit(":", 1)[1]), name="secured", prefix="/secured", replica_cpus=0.5, max_replicas=1)
    try:
        browser.get(f"{url}/")
        assert wait(browser, lambda d: by_id(d, "token-error").text).startswith("Enter the server's API token")
        assert by_id(browser, "token-section").is_displayed()
        type_into(browser, "token", "s3cret\n")
        wait(browser, lambda d: "tiny:llama" in by_id(d, "model-name").text)
        wait(browser, lambda d: not by_id(d, "token-section").is_displayed(), 10)
        # under a route prefix the page loads its script and data from that prefix
        assert wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#shipped option")) > 1)
    finally:
        serve.delete("secured")
