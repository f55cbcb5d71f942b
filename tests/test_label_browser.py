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
