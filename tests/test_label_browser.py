"""End to end in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright-python).

Installed by `.ci/install_browser.sh`; skipped, with the reason, only when the browser or playwright is missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ziegler_trl.labeling import LabelStore
from ziegler_trl.labeling.app import BackgroundServer, shown_order

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (.ci/install_browser.sh)")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (.ci/install_browser.sh)")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def test_label_with_keyboard_refuse_wrong_token_and_export(browser, tmp_path):
    store = LabelStore(tmp_path / "browser.db")
    ids = store.add_comparisons(
        ["The weather today was", "My neighbour's dog", "At the end of the film"],
        [["awful and grey.", "sunny and lovely!", "cloudy."], ["barked.", "bit me, sadly.", "is a joy."],
         ["I cried.", "we cheered!", "we left."]],
        task="sentiment",
    )
    store.add_labeler("ann")
    store.assign(labelers=["ann"])
    expect = sync_api.expect
    with BackgroundServer(store) as url:
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.goto(f"{url}/label/{store.labeler_token('ann')}")
        expect(page.locator("#progress")).to_have_text("0 of 3 done")
        expect(page.locator("#instructions")).to_contain_text("most positive")
        expect(page.locator("#query")).to_have_text("The weather today was")
        page.keyboard.press("2")
        expect(page.locator("#progress")).to_have_text("1 of 3 done")
        expect(page.locator("#query")).to_have_text("My neighbour's dog")
        page.keyboard.press("s")  # skip
        expect(page.locator("#progress")).to_have_text("2 of 3 done")
        page.locator("button.choice").nth(2).click()  # a click works too
        expect(page.locator("#finished")).to_be_visible()
        expect(page.locator("#progress")).to_have_text("3 of 3 done")

        answers = store.answers(labeler="ann")
        orders = [shown_order(store.order_secret, "ann", cid, 3) for cid in ids]
        assert [(a.comparison_id, a.best, a.skipped) for a in answers] == [
            (ids[0], orders[0][1], False), (ids[1], None, True), (ids[2], orders[2][2], False)]
        assert all(a.shown_order == o for a, o in zip(answers, orders))

        response = page.goto(f"{url}/label/not-a-token")
        assert response.status == 403
        expect(page.locator("#message")).to_contain_text("token is unknown")
        assert page.goto(f"{url}/admin/{store.labeler_token('ann')}").status == 403  # a labeler is no admin

        page.goto(f"{url}/admin/{store.admin_token}")
        expect(page.locator("#progress")).to_contain_text("ann")
        with page.expect_download() as download_info:
            page.locator("#export").click()
        download = download_info.value
        assert download.suggested_filename == "browser.jsonl"
        records = [json.loads(line) for line in Path(download.path()).read_text().splitlines()]
        prompts = ["The weather today was", "My neighbour's dog", "At the end of the film"]
        assert [r["prompt"] for r in records] == prompts
        assert [[(a["labeler"], a["best"], a["skipped"]) for a in r["answers"]] for r in records] == [
            [("ann", orders[0][1], False)], [("ann", None, True)], [("ann", orders[2][2], False)]]
        assert re.fullmatch(r"[0-9a-f]{32}", records[0]["uid"])
        context.close()


def test_full_ranking_with_keyboard_and_undo(browser, tmp_path):
    store = LabelStore(tmp_path / "rank.db")
    (cid,) = store.add_comparisons(["Rank these"], [["alpha", "beta", "gamma", "delta"]], task="tldr")
    store.add_labeler("bob")
    store.assign()
    with BackgroundServer(store, ranking=True) as url:
        page = browser.new_page()
        page.goto(f"{url}/label/{store.labeler_token('bob')}")
        sync_api.expect(page.locator("#instructions")).to_contain_text("summary")
        for key in ("2", "4", "Backspace", "3"):
            page.keyboard.press(key)
        sync_api.expect(page.locator("button.choice").nth(2)).to_contain_text("#2")
        page.keyboard.press("1")  # third pick: the last place is implied and the form is sent
        sync_api.expect(page.locator("#finished")).to_be_visible()
        page.close()
    order = shown_order(store.order_secret, "bob", cid, 4)
    (answer,) = store.answers()
    assert answer.ranking == [order[1], order[2], order[0], order[3]] and answer.best == order[1]


def test_phone_layout_blank_lines_undo_and_revoke(browser, tmp_path):
    store = LabelStore(tmp_path / "phone.db")
    padded, plain = "\n\n\nOnce upon a time\n\n", "Once upon a time"
    ids = store.add_comparisons(
        [padded, plain], [["\n\nthe end.\n\n", "a dragon " * 30, "\n \n"], ["the end.", "a dragon " * 30, "x"]],
        task="sentiment",
    )
    store.add_labeler("ann")
    store.assign(labelers=["ann"])
    shots = tmp_path / "screenshots"
    expect = sync_api.expect
    with BackgroundServer(store) as url:
        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                    has_touch=True)
        page = phone.new_page()
        console = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(f"{url}/label/{store.labeler_token('ann')}")

        def layout() -> dict:
            boxes = {"query": page.locator("#query").bounding_box(), "skip": page.locator("#skip").bounding_box(),
                     "choices": [b.bounding_box() for b in page.locator("button.choice").all()]}
            boxes["the end"] = page.locator("button.choice", has_text="the end.").bounding_box()
            boxes["scroll_width"] = page.evaluate("document.documentElement.scrollWidth")
            return boxes

        first = layout()
        page.screenshot(path=str(shots / "padded.png"), full_page=True)
        expect(page.locator("#query")).to_have_text("Once upon a time")  # no leading/trailing blank lines
        expect(page.locator("button.choice", has_text="(empty)")).to_have_count(1)  # a blank completion says so
        for box in [first["skip"], *first["choices"]]:
            assert box["height"] >= 44 and box["width"] >= 44, box
        for box in first["choices"]:
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert first["scroll_width"] <= 390  # nothing wider than the phone

        page.locator("button.choice", has_text="(empty)").tap()
        expect(page.locator("#progress")).to_have_text("1 of 2 done")
        expect(page.locator("#undo-what")).to_contain_text("Your last answer: choice")
        second = layout()
        page.screenshot(path=str(shots / "plain.png"), full_page=True)
        # The padded texts take exactly the room of the same texts without blank lines.
        assert first["query"]["height"] == second["query"]["height"]
        assert first["the end"]["height"] == second["the end"]["height"]
        undo = page.locator("#undo-button").bounding_box()
        assert undo["height"] >= 44 and undo["width"] >= 44

        page.locator("#undo-button").tap()  # take it back: the same comparison returns
        expect(page.locator("#progress")).to_have_text("0 of 2 done")
        expect(page.locator("button.choice", has_text="(empty)")).to_have_count(1)
        page.keyboard.press("u")  # nothing left to undo: the key does nothing
        page.locator("button.choice", has_text="the end.").tap()
        expect(page.locator("#progress")).to_have_text("1 of 2 done")
        trail = store.answers(include_retracted=True)  # stored indices: "(empty)" is 2, "the end." is 0
        assert [(a.comparison_id, a.best, a.retracted) for a in trail] == [(ids[0], 2, True), (ids[0], 0, False)]
        assert store.get_comparisons([ids[0]])[0].prompt == padded  # display only: the stored text is unchanged
        assert not [text for text in console if "Content Security Policy" in text or "Refused" in text], console

        admin = browser.new_page()
        admin.goto(f"{url}/admin/{store.admin_token}")
        revoke_box = admin.locator("button.revoke").bounding_box()
        assert revoke_box["height"] >= 44
        admin.locator("button.revoke").click()
        expect(admin.locator(".revoked")).to_contain_text("revoked")
        admin.screenshot(path=str(shots / "admin.png"), full_page=True)
        admin.close()
        assert page.reload().status == 403
        expect(page.locator("#message")).to_contain_text("revoked")
        phone.close()
    for name in ("padded.png", "plain.png", "admin.png"):
        assert (shots / name).stat().st_size > 5000
