"""Screenshots of each view of a leaderboard.html in headless Chromium (selenium + Debian's
chromium-driver): `python -m suite.report.screenshots [PAGE] [--out DIR]`.

Used to refresh results/plots/leaderboard_*_screenshot.png after `--publish`, and by the browser
test (tests/test_leaderboard_browser.py) for its driver.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
VIEWS = ("tab-board", "tab-pareto", "tab-budget")  # + one tab per paper
WIDTH = 1400  # the page fits this width (tests/test_leaderboard_browser.py)


def missing() -> str:
    """Why no browser can be started here ('' when one can)."""
    gone = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if gone:
        return f"{' and '.join(gone)} missing (Debian: apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium missing (pip install -e '.[dev]')"
    return ""


def driver(width: int = WIDTH, height: int = 1000, profile_dir: str | None = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    opts.add_argument(f"--user-data-dir={profile_dir or tempfile.mkdtemp(prefix='sparq-chromium-')}")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    return drv


def views(drv) -> list[str]:
    from selenium.webdriver.common.by import By

    return [a.get_attribute("data-tab") for a in drv.find_elements(By.CSS_SELECTOR, "#tabs a")]


def shoot(drv, page: Path, out: Path, prefix: str = "leaderboard") -> list[Path]:
    """One PNG per view (tab) of `page`, named <prefix>_<view>_screenshot.png, full page height."""
    from selenium.webdriver.common.by import By

    drv.get(Path(page).resolve().as_uri())
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    for tab in views(drv):
        if tab == "tab-more":
            continue  # the matplotlib figures, already in plots/
        drv.find_element(By.CSS_SELECTOR, f'#tabs a[data-tab="{tab}"]').click()
        if tab == "tab-board":  # show how a record is reproduced: the first configuration's records
            drv.execute_script("var b = document.querySelector('#configs tr.cfg button.expand');"
                               "if (b && b.getAttribute('aria-expanded') !== 'true') b.click();")
        height = drv.execute_script("return Math.min(document.body.scrollHeight, 2000)")
        drv.set_window_size(WIDTH, max(700, height + 40))
        drv.execute_script("window.scrollTo(0, 0)")
        path = out / f"{prefix}_{tab.removeprefix('tab-')}_screenshot.png"
        drv.save_screenshot(str(path))
        shots.append(path)
    return shots


def main(argv: list[str] | None = None) -> None:
    from suite.paths import RESULTS_DIR

    p = argparse.ArgumentParser(prog="python -m suite.report.screenshots", description=__doc__.splitlines()[0])
    p.add_argument("page", nargs="?", type=Path, default=RESULTS_DIR / "leaderboard.html")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "plots")
    args = p.parse_args(argv)
    if why := missing():
        raise SystemExit(f"sparq: error: no headless browser: {why}")
    drv = driver()
    try:
        for path in shoot(drv, args.page, args.out):
            print(path)
    finally:
        drv.quit()


if __name__ == "__main__":
    main()
