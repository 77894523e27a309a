"""Decompose tab in a real browser (Debian chromium through playwright): upload a picture, see
every level's reconstruction and latent, re-sample the detail and the layout, use an example."""

from __future__ import annotations

from tests.conftest import FIXTURES, wait_for

IMAGES = sorted((FIXTURES / "images").iterdir())


def test_decompose_and_resample_in_the_browser(app_server, browser, artifacts_dir):
    url, _demo = app_server
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    try:
        page.goto(url)
        page.get_by_role("tab", name="Decompose").click()
        assert page.locator("#decompose-model input").input_value().startswith("tinyvae16 (hvae")
        assert not page.locator("#decompose-notice").is_visible()

        # The page opens on an example already taken apart ...
        recon = page.locator("#decompose-recon img")
        wait_for(lambda: recon.count() >= 4, timeout=30)
        opened_on = recon.first.get_attribute("src")

        # ... and an upload decomposes at once: the input, then one reconstruction and one latent per level.
        page.locator("#decompose-image input[type=file]").set_input_files(str(IMAGES[4]))
        wait_for(lambda: recon.count() >= 4 and recon.first.get_attribute("src") != opened_on, timeout=30)
        wait_for(lambda: page.locator("#decompose-latents img").count() >= 3, timeout=30)
        assert "nats" in page.locator("#decompose-latents").inner_text()
        assert "16x16" in page.locator("#decompose-table").inner_text()

        # ... and re-sampled: keep coarse, vary detail; the reconstruction then 8 variants, seeds 0-7.
        variants = page.locator("#decompose-variants")
        wait_for(lambda: variants.locator("img").count() >= 9, timeout=30)
        variants.get_by_text("seed 7").wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts_dir / "decompose_detail.png"), full_page=True)

        # Switching to "keep detail, vary layout" re-samples at once, from the seed in the box.
        page.locator("#decompose-seed input").fill("100")
        page.get_by_label("Keep detail, vary layout").check()
        variants.get_by_text("seed 107").wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts_dir / "decompose_layout.png"), full_page=True)

        # The button re-samples with whatever is set; an example picture decomposes at once.
        page.locator("#decompose-seed input").fill("200")
        page.locator("#decompose-resample").click()
        variants.get_by_text("seed 207").wait_for(timeout=30_000)
        before = page.locator("#decompose-recon img").first.get_attribute("src")
        page.get_by_text("Examples (click one)").locator("xpath=..").locator("img").first.click()
        wait_for(lambda: page.locator("#decompose-recon img").first.get_attribute("src") != before, timeout=30)
    finally:
        page.close()
