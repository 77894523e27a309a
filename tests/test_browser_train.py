"""Train tab in a real browser (Debian chromium through playwright): upload, start a short run,
watch the progress bar, loss plot and preview grid update, stop it."""

from __future__ import annotations

import re
import time

from tests.conftest import FIXTURES, wait_for


def progress_step(page) -> int:
    bar = page.locator("#train-progress .msgen-train-progress")
    return int(bar.get_attribute("data-step")) if bar.count() else -1



def test_upload_train_watch_and_stop(app_server, browser, artifacts_dir):
    url, _demo = app_server
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    try:
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        files = sorted(str(p) for p in (FIXTURES / "images").iterdir()) + [str(FIXTURES / "broken" / "page.png")]
        page.locator("#train-files input[type=file]").set_input_files(files)
        summary = page.locator("#train-summary")
        summary.get_by_text(re.compile("16 images accepted")).wait_for(timeout=30_000)
        assert "1 rejected" in summary.inner_text()
        assert page.locator("#train-gallery img").count() >= 16
        assert "looks like HTML" in page.locator("#train-rejected").inner_text()
        page.locator("#train-name input, #train-name textarea").first.fill("browser-run")
        page.locator("#train-steps input").fill("100000")
        page.locator("#train-batch input").fill("4")
        page.locator("#train-preview-every input").fill("3")
        page.locator("#train-start").click()

        first = wait_for(lambda: progress_step(page) > 0 and progress_step(page), timeout=60)
        preview = page.locator("#train-preview img")
        preview.wait_for(timeout=30_000)
        src = preview.get_attribute("src")
        wait_for(lambda: progress_step(page) > first + 6, timeout=60)  # the bar moved on ...
        wait_for(lambda: preview.get_attribute("src") != src, timeout=30)  # ... and a newer preview came
        plot = page.locator("#train-plot")
        wait_for(lambda: plot.locator("canvas, svg").count() > 0, timeout=30)
        assert re.search(r"images/s", page.locator("#train-progress").inner_text())
        page.screenshot(path=str(artifacts_dir / "train_running.png"), full_page=True)

        page.locator("#train-stop").click()
        t0 = time.monotonic()
        page.locator("#train-status").get_by_text(re.compile("stopped")).wait_for(timeout=30_000)
        # Honoured within a step; then the quality report (SWD, coverage) and the export.
        assert time.monotonic() - t0 < 25
        stopped_at = progress_step(page)
        time.sleep(1.5)
        assert progress_step(page) == stopped_at  # nothing trains after Stop
        page.screenshot(path=str(artifacts_dir / "train_stopped.png"), full_page=True)
    finally:
        page.close()

    # A fresh page (the same browser, so the same visitor) starts clean: the stopped run is named as
    # the last one and where to find it, not shown as the current run with its plot and preview.
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    try:
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        status = page.locator("#train-status")
        status.get_by_text(re.compile("Your last run")).wait_for(timeout=30_000)
        assert "browser-run" in status.inner_text() and "Your runs" in status.inner_text()
        assert page.locator("#train-preview img").count() == 0 and progress_step(page) == -1
    finally:
        page.close()


def test_upload_captions_name_each_member(app_server, browser, tmp_path):
    import zipfile

    url, _demo = app_server
    archive = tmp_path / "a-long-archive-name-that-the-gallery-would-cut.zip"
    images = sorted((FIXTURES / "images").iterdir())[:4]
    with zipfile.ZipFile(archive, "w") as zf:
        for p in images:
            zf.write(p, f"inner/{p.name}")
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-files input[type=file]").set_input_files([str(archive)])
        page.locator("#train-summary").get_by_text(re.compile("4 images accepted")).wait_for(timeout=30_000)
        gallery = page.locator("#train-gallery").inner_text()
        assert all(p.name in gallery for p in images), gallery
    finally:
        page.close()
