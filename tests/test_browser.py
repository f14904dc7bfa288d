"""The demo in a real browser (Debian's Chromium through chromedriver and Selenium; no browser download):
the `mmgeo serve` page (upload the demo photo) and the `mmgeo-search --html` file (opened from disk).

Each test checks the Empire State Building comes first, the map's basemap is drawn, every thumbnail
loaded, the console has no error, and keeps a screenshot in its tmp_path (printed with -s).
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from copying import copy_tree

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")]

LAND, WATER = (0xF4, 0xF1, 0xE8), (0xCF, 0xE2, 0xEF)  # report.js basemap fill, report.css map background


@pytest.fixture(scope="module")
def demo(make_demo, tmp_path_factory):
    """The README demo as `make demo` builds it: its world, trained stage-2 encoder, text projection and `--html`
    report, and a copy of its store (the server opens it)."""
    built = make_demo / "demo"
    store = tmp_path_factory.mktemp("demo") / "store"
    copy_tree(built / "store", store)
    return {"world": built / "world", "store": store, "proj": built / "text-projection.safetensors", "page": built / "map.html",
            "stage2": built / "stage2" / "last.pt"}


@pytest.fixture(scope="module")
def server(demo):
    """`mmgeo serve`'s app on the demo store, on a free 127.0.0.1 port, in this process."""
    import uvicorn

    from mmgeo.qdrant import open_store
    from mmgeo.search.factory import build_geolocator
    from mmgeo.serve import create_app

    store = open_store(str(demo["store"]))
    geo = build_geolocator(store, weights=str(demo["stage2"]), stage1="knn", text_encoder=demo["proj"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(geo), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1100", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, script, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.execute_script(script):
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {script}")


def check_report(driver, shot):
    """The checks both pages share; the screenshot is kept at ``shot``."""
    from selenium.webdriver.common.by import By

    _wait(driver, "return document.querySelectorAll('.leaflet-marker-icon.mmgeo-pin').length > 0")
    _wait(driver, "var t = document.querySelectorAll('img.mmgeo-thumb'); return t.length > 0 && "
                  "Array.prototype.every.call(t, function (i) { return i.complete; })")
    assert driver.find_element(By.ID, "mmgeo-answer").text == "Empire State Building"
    rows = driver.find_elements(By.CSS_SELECTOR, "tr.mmgeo-cand")
    assert rows and "New York" in rows[0].text
    thumbs = driver.execute_script("return Array.prototype.map.call(document.querySelectorAll('img.mmgeo-thumb'), "
                                   "function (i) { return [i.alt, i.naturalWidth]; })")
    assert len(thumbs) >= 1 + len(rows) and all(w > 0 for _, w in thumbs), thumbs  # query + one tile per candidate
    assert any(alt == "ground photo" for alt, _ in thumbs)
    driver.save_screenshot(str(shot))
    map_px = np.asarray(Image.open(io.BytesIO(driver.find_element(By.ID, "mmgeo-map").screenshot_as_png)).convert("RGB"))
    share = {name: np.mean(np.all(np.abs(map_px.astype(int) - rgb) <= 3, axis=-1)) for name, rgb in
             (("land", LAND), ("water", WATER))}
    assert share["land"] > 0.05 and share["water"] > 0.01, share  # coastline and land drawn, not a blank tile pane
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    print(f"screenshot: {shot}")


def test_serve_page_locates_the_uploaded_demo_photo(server, demo, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.ID, "mmgeo-photos").send_keys(str(demo["world"] / "demo-photo.jpg"))
    browser.find_element(By.ID, "mmgeo-go").click()
    _wait(browser, "return document.body.getAttribute('data-mmgeo-done') === '1' || "
                   "document.getElementById('mmgeo-status').textContent.indexOf('error') === 0")
    assert "done in" in browser.find_element(By.ID, "mmgeo-status").text
    check_report(browser, tmp_path / "serve-page.png")


def test_html_report_opens_offline_from_disk(demo, browser, tmp_path):
    browser.get(demo["page"].as_uri())
    check_report(browser, tmp_path / "html-report.png")
