"""leaderboard.html in a real headless Chromium (selenium + Debian's chromium-driver): sort, filter,
escaping, and no network. The browser is installed with apt where missing (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_support import MALICIOUS, shared_store

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def ensure_chromium() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium/chromium-driver missing and apt-get not usable (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env,
                   timeout=900)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    from suite.report import build

    out = tmp_path_factory.mktemp("browser") / "results"
    build(out, shared_store(tmp_path_factory), environment=False)
    return out / "leaderboard.html"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    ensure_chromium()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def visible_rows(drv) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in drv.find_elements(By.CSS_SELECTOR, "#cells tbody tr") if tr.is_displayed()]


def column(drv, name: str) -> int:
    from selenium.webdriver.common.by import By

    heads = [th.text.replace("▲", "").replace("▼", "").strip()
             for th in drv.find_elements(By.CSS_SELECTOR, "#cells thead th")]
    return heads.index(name)


def test_sort_filter_and_escaping_in_a_real_browser(driver, page):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(page.as_uri())
    assert driver.title == "sparq leaderboard"
    rows = visible_rows(driver)
    assert len(rows) == 14
    assert driver.find_element(By.ID, "count").text == "14 of 14 cells shown"

    # the malicious model name is shown as text, and never ran
    i_model = column(driver, "model")
    assert MALICIOUS in [r[i_model] for r in rows]
    assert driver.execute_script("return document.querySelectorAll('script').length") == 1
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018

    # sort by eval_primary: ascending, then descending
    i_primary = column(driver, "eval_primary")
    header = driver.find_elements(By.CSS_SELECTOR, "#cells thead th")[i_primary]
    header.click()
    vals = [float(r[i_primary]) for r in visible_rows(driver)]
    assert vals == sorted(vals) and vals[0] == 50.0
    header.click()
    vals = [float(r[i_primary]) for r in visible_rows(driver)]
    assert vals == sorted(vals, reverse=True) and vals[0] == 91.0

    # sort by a text column
    i_task = column(driver, "task")
    driver.find_elements(By.CSS_SELECTOR, "#cells thead th")[i_task].click()
    tasks = [r[i_task] for r in visible_rows(driver)]
    assert tasks == sorted(tasks) and tasks[0] == "mrpc"

    # free-text filter, then a column filter on top
    box = driver.find_element(By.ID, "filter")
    box.send_keys("mrpc")
    rows = visible_rows(driver)
    assert len(rows) == 2 and all(r[i_task] == "mrpc" for r in rows)
    assert driver.find_element(By.ID, "count").text == "2 of 14 cells shown"
    box.clear()
    box.send_keys("percentile")
    assert len(visible_rows(driver)) == 1
    box.clear()
    driver.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)
    Select(driver.find_element(By.ID, "filter-experiment")).select_by_value("intelcaffe_int8-quick")
    rows = visible_rows(driver)
    i_exp = column(driver, "experiment")
    assert len(rows) == 3 and {r[i_exp] for r in rows} == {"intelcaffe_int8-quick"}
    i_bits = column(driver, "bits")
    assert {r[i_bits] for r in rows} == {"ptq w8a8"}

    # claims and plots are on the page, plots embedded (no external resources)
    claims = driver.find_elements(By.CSS_SELECTOR, "#claims tbody tr")
    assert {c.find_elements(By.TAG_NAME, "td")[0].text for c in claims} >= {"PO1", "IC2", "S3"}
    srcs = driver.execute_script("return Array.from(document.images).map(i => i.src.slice(0, 26))")
    assert srcs and all(s.startswith("data:image/svg+xml;base64") for s in srcs)
    loaded = driver.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert loaded
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert [r for r in resources if not r.startswith("data:")] == []
