"""The designers' playground at /playground: its options from the served monsters, and the real page in
headless Chromium asking blue and green side by side, streaming both answers with the rules engine's verdict.
The screenshot is kept in test-artifacts/playground.png."""

import shutil
from urllib.parse import urlencode

import httpx2
import pytest
from PIL import Image

from tests.helpers import REPO
from tests.scripted_engine import CHARMS, FEEDS, ScriptedEngine, streamed_chunks

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# what this machine's closed network needs (../.library/env): no background connections, no QUIC
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
SLOTS = ("blue", "green")
ARTIFACTS = REPO / "test-artifacts"
PASS_GREEN, FAIL_RED = (0x1E, 0x7D, 0x32), (0xB7, 0x1C, 0x1C)  # the verdict banners' colours in playground.html


def test_the_options_offer_every_served_monster_and_encounter_field(scripted_server):
    running = scripted_server(ScriptedEngine(CHARMS), serve_green=True)
    options = httpx2.get(f"{running.url}/playground/options").json()
    assert [m["id"] for m in options["models"]] == ["vampire", "vampire@tier2"]  # green sits beside its blue
    vampire = options["models"][0]
    assert vampire["green"] == {"id": "vampire:green", "adapter_version": "d" * 64}
    assert vampire["adapter_version"] == "c" * 64 and "feed" in vampire["actions"]
    assert "blood_moon" in vampire["live_events"]
    assert "garlic" in options["fields"]["items"] and "village" in options["fields"]["location_kind"]
    assert options["current"]["weather"] == "fog"  # the live game state (game_state/seed.yaml)
    # without serve_green the held candidate is not served
    assert scripted_server(ScriptedEngine(CHARMS)).server.playground_options()["models"][0]["green"] is None


def test_a_streamed_answer_ends_with_its_summary_and_verdict(scripted_server):
    running = scripted_server(ScriptedEngine(FEEDS))
    summary = streamed_chunks(running)[-1].srl_forge
    assert summary["action"] == "charm" and summary["rules"]["model_action"] == "feed"
    assert summary["verdict"]["passed"] and summary["verdict"]["action"] == "charm"
    assert summary["verdict"]["line_problems"] == []  # the expert line keeps the voice
    assert "vampire.garlic" in [rule["rule_id"] for rule in summary["verdict"]["fired"]]
    assert summary["adapter_version"] == "c" * 64 and summary["slot"] == "blue"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_the_page_streams_blue_and_green_side_by_side_with_the_verdicts(scripted_server):
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - playwright is there only where make test installed chromium

    # blue feeds though the player carries garlic (refused and replaced); green charms (allowed)
    engine = ScriptedEngine(by_model={"vampire": FEEDS, "vampire:green": CHARMS}, seconds_per_piece=0.005)
    running = scripted_server(engine, serve_green=True)
    query = {
        "model": "vampire",
        "time_of_day": "night",
        "items": "garlic",
        "faction": "hunters",
        "location_kind": "village",
        "player_action": "talk",
        "say": "Good evening, stranger.",
        "side_by_side": "true",
        "ask": "1",
    }
    url = f"{running.url}/playground?{urlencode(query)}"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "playground.png"
    screenshot.unlink(missing_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("body[data-answered=yes]", timeout=60_000)
        blue = page.inner_text("article[data-slot=blue]")
        green = page.inner_text("article[data-slot=green]")
        classes = {slot: page.get_attribute(f"article[data-slot={slot}] .verdict", "class") for slot in SLOTS}
        thinking_open = page.is_visible("article[data-slot=green] .thinking")
        page.click("article[data-slot=green] summary")
        thought = page.inner_text("article[data-slot=green] .thinking")
        page.click("article[data-slot=green] summary")  # folded again for the screenshot
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert classes == {"blue": "verdict fail", "green": "verdict pass"}
    assert "model chose feed: refused (vampire.garlic), replaced by the rules engine" in blue
    assert "ACTION: charm" in blue and "Come closer" not in blue
    assert "rules engine: charm allowed" in green and "the line keeps the species' dialogue rules" in green
    assert "Sit, mortal, and tell me of the road." in green and "vampire.garlic [applied]" in green
    assert "adapter dddddddddddd" in green and "adapter cccccccccccc" in blue
    assert not thinking_open and thought.startswith("Garlic; I will not feed.")  # folded until asked for
    assert {r.served.model for r in running.records()} == {"vampire", "vampire:green"}

    pixels = Image.open(screenshot).convert("RGB").getdata()
    colours = {PASS_GREEN: 0, FAIL_RED: 0}
    for pixel in pixels:
        if pixel in colours:
            colours[pixel] += 1
    # both verdict banners are on the screen: a refused blue one and an allowed green one
    assert colours[FAIL_RED] > 2000 and colours[PASS_GREEN] > 2000, colours
