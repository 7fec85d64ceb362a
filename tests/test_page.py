"""The recordings page in a real browser: Debian's chromium driven by Playwright, against
real capture, worker and API processes behind an API key.

Screenshots (list and recording, desktop and phone) go to the test's folder, or to
$SCO_SCREENSHOT_DIR when set (`SCO_SCREENSHOT_DIR=docs/ui make test` refreshes the README's).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.frames import load_manifest
from tests.support.waiting import wait_final
from tests.test_find import KEY, recorded  # noqa: F401  # the fixture, shared

pytestmark = pytest.mark.e2e
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SHA256_OF_SHOWN_FRAME = """async () => {
  const blob = await (await fetch(document.querySelector('#frame').src)).arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', blob);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}"""


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install chromium")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCO_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_page_lists_plays_checks_and_downloads_recordings_only_with_the_key(
    recorded: tuple[httpx.Client, list[dict[str, Any]]],  # noqa: F811  # the imported fixture
    browser: Any,
    shots: Path,
    tmp_path: Path,
) -> None:
    client, recordings = recorded
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    rows = page.locator("#recordings tbody tr")
    page.goto(str(client.base_url))
    nothing_shows_without_the_key(page, rows)

    # A new recording appears by itself.
    newest = client.post("/v1/events", json={"transaction_id": "T-4"}).json()["recording_id"]
    wait_final(client, newest)
    playwright.expect(rows).to_have_count(4, timeout=15_000)
    playwright.expect(rows.first).to_contain_text("T-4")
    playwright.expect(rows.first.locator("img")).to_have_js_property("complete", True)
    page.screenshot(path=shots / "list-desktop.png", full_page=True)

    page.fill("input[name=transaction_id]", "T-2")
    page.click("#filters button[type=submit]")
    playwright.expect(rows).to_have_count(1)
    rows.first.click()
    every_frame_with_the_keyboard(page, load_manifest(recordings[1]))
    zip_checks_out(page, tmp_path / "download.zip")
    hold_and_release(page, client, recordings[1]["recording_id"])
    page.screenshot(path=shots / "recording-desktop.png", full_page=True)

    page.set_viewport_size(PHONE)
    page.screenshot(path=shots / "recording-phone.png", full_page=True)
    page.click("text=← All recordings")
    playwright.expect(rows.first).to_be_visible()
    page.screenshot(path=shots / "list-phone.png", full_page=True)

    page.click("#forget-key")
    playwright.expect(page.locator("#key-form")).to_be_visible()
    playwright.expect(page.locator("#list-view")).to_be_hidden()
    context.close()


def nothing_shows_without_the_key(page: Any, rows: Any) -> None:
    """A prompt and no recording, frame or camera; a wrong key is refused; the key works."""
    playwright.expect(page.locator("#key-form")).to_be_visible()
    assert rows.count() == 0
    assert page.locator("#cameras .camera").count() == 0
    page.fill("#key-input", "not-the-key")
    page.press("#key-input", "Enter")
    playwright.expect(page.locator("#key-error")).to_have_text("That key was refused.")
    assert rows.count() == 0
    page.fill("#key-input", KEY)
    page.press("#key-input", "Enter")
    playwright.expect(rows).to_have_count(3)
    playwright.expect(page.locator("#cameras .camera")).to_have_count(1)
    assert KEY not in page.url


def every_frame_with_the_keyboard(page: Any, manifest: dict[str, Any]) -> None:
    """Right arrow through every frame, each shown the PNG whose SHA-256 metadata.json has;
    then the server-side check."""
    frames = manifest["frames"]
    image = page.locator("#frame")
    for number, frame in enumerate(frames, start=1):
        if number > 1:
            page.keyboard.press("ArrowRight")
        playwright.expect(image).to_have_attribute("data-frame", str(number))
        assert page.evaluate(SHA256_OF_SHOWN_FRAME) == frame["sha256"], number
    page.keyboard.press("ArrowLeft")
    playwright.expect(image).to_have_attribute("data-frame", str(len(frames) - 1))
    playwright.expect(page.locator("#metadata")).to_contain_text("4006381333931")
    page.click("#verify")
    playwright.expect(page.locator("#verify-result")).to_have_text(
        f"OK: all {len(frames)} frames match their SHA-256 in metadata.json, signed by this box"
    )


def hold_and_release(page: Any, client: httpx.Client, recording_id: str) -> None:
    """Hold asks why and who, shows the hold, and the API has it; release undoes it."""
    answers = iter(["case LP-114", "anna.lp", "case closed", "anna.lp"])
    page.on("dialog", lambda dialog: dialog.accept(next(answers)))
    page.click("#hold")
    playwright.expect(page.locator("#facts")).to_contain_text("case LP-114 (by anna.lp")
    assert client.get(f"/v1/recordings/{recording_id}").json()["hold"]["reason"] == "case LP-114"
    page.click("#release")
    playwright.expect(page.locator("#hold")).to_be_visible()
    assert client.get(f"/v1/recordings/{recording_id}").json()["hold"] is None


def zip_checks_out(page: Any, saved: Path) -> None:
    """The download button saves a zip whose SHA256SUMS holds for every file."""
    with page.expect_download() as started:
        page.click("#download")
    started.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        files = {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}
    for line in files["SHA256SUMS"].decode().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256(files[name]).hexdigest() == digest, name
