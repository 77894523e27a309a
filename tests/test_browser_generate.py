"""Generate tab in a real browser (Debian chromium through playwright): pick a model, move the
seed with the number box, the slider and the dice, and check that the image and every level's
card (picture, PCA view, top channels) and the channel view are rendered from the one inline
payload (data URIs, no picture fetched on its own), that a card enlarges on a click and stays
enlarged while the seed moves, that the statistics follow, and that the channel picker and seed
B's dice update the page. Saves a screenshot."""

from __future__ import annotations

from tests.conftest import wait_for as _wait_for

import re

LOADED = "el => el.complete && el.naturalWidth > 0 && el.getBoundingClientRect().width > 0"



def wait_for(predicate, timeout=30.0, every=0.1):
    return _wait_for(predicate, timeout, every)


def info(page) -> str:
    return page.locator("#msgen-info").inner_text()


def all_rendered(page, n_levels: int) -> bool:
    cards = page.locator("#msgen-levels img")
    main = page.locator("#msgen-image img")
    channel = page.locator("#msgen-channel img")
    pictures = [cards.nth(i) for i in range(cards.count())] + [main, channel]
    return (cards.count() == n_levels and main.count() == 1 and channel.count() == 1
            and all(p.evaluate(LOADED) for p in pictures)
            and all(p.get_attribute("src").startswith("data:image/webp;base64,") for p in pictures))


def test_move_the_seed_and_every_level_renders(app_server, browser, artifacts_dir):
    url, _demo = app_server
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(url)
        page.locator("#msgen-image img").wait_for(timeout=30_000)  # the opening picture
        wait_for(lambda: all_rendered(page, 3))  # tiny16: levels 4, 8, 16

        # Another model: its levels become the scale choices and the page redraws.
        page.locator("#msgen-model input").click()
        page.get_by_role("option", name=re.compile("tiny32")).click()
        wait_for(lambda: "tiny32" in info(page) and all_rendered(page, 4))
        assert [t.strip() for t in page.locator("#msgen-scale label").all_inner_texts()] == \
            ["4x4", "8x8", "16x16", "32x32"]
        page.locator("#msgen-model input").click()
        page.get_by_role("option", name=re.compile("tinyvae16")).click()
        wait_for(lambda: "tinyvae16" in info(page) and all_rendered(page, 3))
        before = page.locator("#msgen-image img").get_attribute("src")

        # The number box: type a seed and press Enter; nothing is fetched beyond the one response.
        files = []
        page.on("request", lambda r: files.append(r.url) if "/file=" in r.url else None)
        stats_before = page.locator("#msgen-stats").inner_text()
        box = page.locator("#msgen-seed-box input")
        box.fill("4000000000")
        box.press("Enter")
        wait_for(lambda: "from seed 4000000000" in info(page))
        wait_for(lambda: page.locator("#msgen-image img").get_attribute("src") != before)
        wait_for(lambda: all_rendered(page, 3))
        assert page.locator("#msgen-seed input[type=number]").input_value() == "4000000000"
        assert page.locator("#msgen-stats").inner_text() != stats_before and files == []

        # A click enlarges a card; it stays enlarged while the seed moves, a second click restores it.
        page.locator("#msgen-levels figure").nth(1).click()
        wait_for(lambda: page.locator("#msgen-levels figure.zoom figcaption").all_inner_texts() == ["8x8: 32 channels"])
        large = page.locator("#msgen-levels figure.zoom img").bounding_box()["width"]
        assert large > 2 * page.locator("#msgen-levels figure:not(.zoom) img").first.bounding_box()["width"]

        # The slider: keyboard steps, each one computed without a button press.
        slider = page.locator("#msgen-seed input[type=range]")
        slider.focus()
        for _ in range(3):
            slider.press("ArrowRight")
        wait_for(lambda: "from seed 4000000003" in info(page))
        wait_for(lambda: box.input_value() == "4000000003")
        wait_for(lambda: all_rendered(page, 3))
        assert page.locator("#msgen-levels figure.zoom").count() == 1
        page.locator("#msgen-levels figure.zoom").click()
        wait_for(lambda: page.locator("#msgen-levels figure.zoom").count() == 0)

        # The dice: any 32-bit seed.
        page.locator("#msgen-dice").click()
        wait_for(lambda: "from seed 4000000003" not in info(page))
        seed = int(re.search(r"from seed (\d+)", info(page)).group(1))
        assert 0 <= seed < 2**32
        wait_for(lambda: all_rendered(page, 3))
        # The grid of seeds: a tile's click makes its seed the page's, in one event.
        page.get_by_text("Latent walk from seed to seed B, and a grid of seeds").click()
        page.get_by_role("button", name="Show the grid").click()
        tiles = page.locator("#msgen-grid img")
        wait_for(lambda: tiles.count() == 16)
        tiles.nth(1).click()
        wait_for(lambda: f"from seed {(seed + 1) % 2**32}" in info(page))
        wait_for(lambda: page.locator("#msgen-seed-box input").input_value() == str((seed + 1) % 2**32))
        wait_for(lambda: all_rendered(page, 3))
        # The channel picker: another level is one response with its most active channel.
        natural = "el => el.naturalWidth"
        page.locator("#msgen-channel-level label", has_text="8x8").click()
        wait_for(lambda: page.locator("#msgen-channel img").evaluate(natural) == 8)
        # Mixing, then seed B's dice: a new seed B and the page for it, in one event.
        page.locator("#msgen-mix-level label", has_text="8x8").click()
        wait_for(lambda: "levels >= 8 from seed 1" in info(page))
        page.locator("#msgen-dice-b").click()
        wait_for(lambda: "levels >= 8 from seed" in info(page) and "from seed 1," not in info(page))
        seed_b = re.search(r"levels >= 8 from seed (\d+)", info(page)).group(1)
        assert page.locator("#msgen-seed-b input").input_value() == seed_b
        wait_for(lambda: all_rendered(page, 3))
        captions = page.locator("#msgen-levels figcaption").all_inner_texts()
        assert [c.split(":")[0] for c in captions] == ["4x4", "8x8", "16x16"]
        stats = page.locator("#msgen-stats").inner_text()
        assert all(f"{lvl}x{lvl}" in stats for lvl in (4, 8, 16)) and "share <= 0" in stats
        page.screenshot(path=str(artifacts_dir / "generate.png"), full_page=True)
    finally:
        page.close()
