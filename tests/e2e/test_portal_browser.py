"""The portal in a real browser against the running system (every service a real process).

Debian's Chromium, driven by Playwright (its own browser download is not reachable here): a user
logs in, uploads both sample files, watches them reach `done` live (no reload), opens a result
and its preview; a second user, logged in at the same time, sees none of it. Screenshots at a
laptop and a phone width are written to the test's tmp dir (and to $PORTAL_SCREENSHOTS if set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
SAMPLES = ("sample-01-dicom.dcm", "sample-02-dicom.dcm")
PROCESSING_TIMEOUT_MS = 60_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium).", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Screenshots:
    """Screenshots into the test's tmp dir, copied to $PORTAL_SCREENSHOTS for people to look at."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.keep = Path(os.environ["PORTAL_SCREENSHOTS"]) if os.environ.get("PORTAL_SCREENSHOTS") else None

    async def take(self, page: Page, name: str) -> Path:
        path = self.folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"screenshot {name} looks empty"
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.keep / path.name)
        return path


async def open_portal(
    browser: Browser, base_url: str, email: str, password: str, *, keyboard: bool = False
) -> tuple[Page, list[dict[str, Any]]]:
    """A fresh browser context logged in as `email` (mouse or keyboard only), live feed connected; and its frames."""
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    frames: list[dict[str, Any]] = []
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))))
    await page.goto(f"{base_url}/")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    if keyboard:
        # The page's heading has the focus; the form's fields follow in order and Enter submits.
        assert await page.evaluate("document.activeElement.tagName") == "H1"
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.id") == "login-email"
        await page.keyboard.type(email)
        await page.keyboard.press("Tab")
        await page.keyboard.type(password)
        await page.keyboard.press("Enter")
    else:
        await page.get_by_label("E-mail").fill(email)
        await page.get_by_label("Password").fill(password)
        await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Upload")).to_be_visible()
    # Navigation moves the focus to the new page's heading (screen readers announce it).
    assert await page.evaluate("document.activeElement.tagName") == "H1"
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    page.set_default_timeout(15_000)
    assert errors == [], errors
    return page, frames


def pixel_range(path: Path) -> tuple[int, int]:
    """Minimum and maximum stored pixel value, computed here from the file itself."""
    pixels = pydicom.dcmread(path).pixel_array
    return int(np.min(pixels)), int(np.max(pixels))


async def painted_pixels(page: Page) -> int:
    """How many pixels of the histogram canvas are not transparent."""
    count: int = await page.evaluate(
        """() => {
            const canvas = document.querySelector('#histogram');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted += 1;
            return painted;
        }"""
    )
    return count


def as_int(text: str) -> int:
    return int(text.replace(",", "").replace("\u202f", "").replace("\xa0", "").strip())


async def test_a_user_watches_their_upload_finish_live_and_another_user_sees_none_of_it(
    running_system: Any, browser: Browser, samples_dir: Path, tmp_path: Path
) -> None:
    base_url = running_system.gateway_url
    alice = await running_system.create_user("alice")
    bob = await running_system.create_user("bob")
    shots = Screenshots(tmp_path)

    # Bob is logged in and watching his instances the whole time.
    bob_page, bob_frames = await open_portal(browser, base_url, bob.email, bob.password, keyboard=True)
    await bob_page.get_by_role("link", name="Instances").click()
    await expect(bob_page.get_by_text("No instances yet.")).to_be_visible()

    alice_page, alice_frames = await open_portal(browser, base_url, alice.email, alice.password)
    await shots.take(alice_page, "desktop-upload-empty")
    await alice_page.evaluate("window.__sameDocument = true")

    await alice_page.set_input_files("#pick-files", [str(samples_dir / name) for name in SAMPLES])
    rows = alice_page.locator("#upload-files tbody tr")
    await expect(rows).to_have_count(2)
    await alice_page.get_by_role("button", name="Upload", exact=True).click()
    for name in SAMPLES:
        await expect(rows.filter(has_text=name)).to_have_attribute("data-outcome", "accepted")
    done_rows = alice_page.locator('#upload-files tbody tr[data-status="done"]')
    await expect(done_rows).to_have_count(2, timeout=PROCESSING_TIMEOUT_MS)

    # Live: the page was never reloaded, and `done` reached it through the feed for both instances.
    assert await alice_page.evaluate("window.__sameDocument") is True
    instance_ids = set(await rows.evaluate_all("rows => rows.map(row => row.dataset.instance)"))
    assert len(instance_ids) == 2 and None not in instance_ids
    live_done = {
        f["event"]["instance_id"] for f in alice_frames if f["type"] == "status" and f["event"]["status"] == "done"
    }
    assert live_done == instance_ids
    await expect(alice_page.locator("#overall-text")).to_have_text("Sent; processing follows below.")
    await shots.take(alice_page, "desktop-upload-done")

    # The instances list shows both as done; open the first sample's result.
    await alice_page.get_by_role("link", name="Instances").click()
    table_rows = alice_page.locator(".instances-table tbody tr")
    await expect(table_rows).to_have_count(2)
    await expect(alice_page.locator('.instances-table tbody tr[data-status="done"]')).to_have_count(2)
    await shots.take(alice_page, "desktop-instances")
    await alice_page.get_by_role("link", name=SAMPLES[0], exact=True).click()
    await expect(alice_page.get_by_role("heading", name="Instance")).to_be_visible()
    preview = alice_page.locator("#preview")
    await expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
    await alice_page.wait_for_function("document.querySelector('#preview').naturalWidth > 0")
    low, high = pixel_range(samples_dir / SAMPLES[0])
    original = alice_page.locator("#statistics tbody tr").first
    assert as_int(await original.locator("td").nth(0).inner_text()) == low
    assert as_int(await original.locator("td").nth(1).inner_text()) == high
    # The owner sees the patient-identifying fields of her instance (nobody else can open it at all).
    patient = alice_page.locator("#patient")
    await expect(patient).to_contain_text(
        str(pydicom.dcmread(samples_dir / SAMPLES[0], stop_before_pixels=True).PatientID)
    )
    linear = await painted_pixels(alice_page)
    assert linear > 1000, "the histogram canvas is blank"
    await alice_page.get_by_label("Logarithmic counts").check()
    assert await painted_pixels(alice_page) > linear, "a log scale should lift the small bins"
    instance_url = alice_page.url
    instance_id = instance_url.rsplit("/", 1)[-1]
    assert instance_id in instance_ids
    await shots.take(alice_page, "desktop-instance")
    await alice_page.set_viewport_size(PHONE)
    await shots.take(alice_page, "phone-instance")

    # My uploads: one upload, both instances done; its page lists both files.
    await alice_page.get_by_role("link", name="My uploads").click()
    uploads = alice_page.locator("#uploads-results tbody tr")
    await expect(uploads).to_have_count(1)
    await expect(uploads.locator('.badge[data-status="done"]')).to_have_count(1)
    await uploads.get_by_role("link").click()
    await expect(alice_page.get_by_role("heading", name="Upload", exact=True)).to_be_visible()
    await expect(alice_page.locator('tbody tr[data-status="done"]')).to_have_count(2)
    await shots.take(alice_page, "phone-upload-detail")
    await alice_page.get_by_role("link", name="Upload", exact=True).click()
    await shots.take(alice_page, "phone-upload-done")

    # Bob saw none of it: no event on his feed, nothing in his lists, a 404 for Alice's instance.
    assert [f for f in bob_frames if f["type"] == "status"] == []
    await bob_page.reload()
    await expect(bob_page.locator("#feed-state")).to_have_attribute("data-state", "live")
    await expect(bob_page.get_by_text("No instances yet.")).to_be_visible()
    await bob_page.get_by_role("link", name="Studies").click()
    await expect(bob_page.get_by_text("No studies yet.")).to_be_visible()
    await bob_page.goto(f"{base_url}/#/instances/{instance_id}")
    await expect(bob_page.get_by_text("There is no such instance.")).to_be_visible()
    await expect(bob_page.locator("#patient")).to_have_count(0)
    status = await bob_page.evaluate(
        """async (id) => {
            const token = JSON.parse(sessionStorage.getItem('dicomflow.session')).token;
            const headers = {Authorization: `Bearer ${token}`};
            return (await fetch(`/api/instances/${id}/preview.png`, {headers})).status;
        }""",
        instance_id,
    )
    assert status == 404
    await shots.take(bob_page, "desktop-other-user")


def unique_elements(source: Path, folder: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The brief's element document with ids and device names made unique to this test."""
    suffix = uuid.uuid4().hex[:6]
    document = json.loads(source.read_text())
    for element in document.values():
        element["id"] = f"{element['id']}-{suffix}"
        element["deviceName"] = f"{element['deviceName']} {suffix}"
    path = folder / "elements.json"
    path.write_text(json.dumps(document))
    return path, document


async def elements_created(
    running_system: Any, browser: Browser, name: str, samples_dir: Path, tmp_path: Path
) -> tuple[Page, dict[str, dict[str, Any]]]:
    """A new user's elements page after it created the brief's elements (made unique) from a JSON file."""
    user = await running_system.create_user(name)
    page, _ = await open_portal(browser, running_system.gateway_url, user.email, user.password)
    path, document = unique_elements(samples_dir / "sample-04-json.json", tmp_path)
    await page.get_by_role("link", name="Elements").click()
    await page.get_by_label("Create from a JSON file").set_input_files(str(path))
    await expect(page.locator(".success")).to_have_text(f"{len(document)} element(s) created from elements.json.")
    return page, document


async def test_the_elements_page_creates_from_a_file_renames_and_deletes(
    running_system: Any, browser: Browser, samples_dir: Path, tmp_path: Path
) -> None:
    page, document = await elements_created(running_system, browser, "elements", samples_dir, tmp_path)

    # Filter on one device: exactly its elements, with the brief's figures computed here.
    first = document["1"]
    device = first["deviceName"]
    expected = [e for e in document.values() if e["deviceName"] == device]
    await page.get_by_label("Device", exact=True).fill(device)
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("#elements-table tbody tr")
    await expect(rows).to_have_count(min(len(expected), 20))
    values = [float(v) for line in first["data"] for v in line.split()]
    row = page.locator(f'#elements-table tr[data-element="{first["id"]}"]')
    cells = row.locator("td")
    assert float((await cells.nth(2).inner_text()).replace(",", "")) == pytest.approx(
        sum(values) / len(values), rel=1e-5
    )
    assert float(await cells.nth(3).inner_text()) == pytest.approx(
        sum(v / max(values) for v in values) / len(values), rel=1e-5
    )
    assert int(await cells.nth(4).inner_text()) == len(values)
    await Screenshots(tmp_path).take(page, "desktop-elements")

    # Rename with the keyboard-reachable inline form, then delete (confirming the dialog).
    renamed = f"{first['id']}-renamed"
    await page.get_by_role("button", name=f"Rename {first['id']}").click()
    await page.get_by_label("New id").fill(renamed)
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".success")).to_have_text(f"Element {first['id']} saved.")
    await expect(page.locator(f'#elements-table tr[data-element="{renamed}"]')).to_have_count(1)
    await expect(page.locator(f'#elements-table tr[data-element="{first["id"]}"]')).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name=f"Delete {renamed}").click()
    await expect(page.locator(".success")).to_have_text(f"Element {renamed} deleted.")
    await expect(page.locator("#announcer")).to_have_text(f"Element {renamed} deleted.")
    await expect(page.locator(f'#elements-table tr[data-element="{renamed}"]')).to_have_count(0)
    await expect(rows).to_have_count(min(len(expected), 20) - (1 if len(expected) <= 20 else 0))


def span(first: int, last: int, total: int) -> str:
    """The pager's text for rows `first` to `last` of `total` (an en dash between them)."""
    return f"{first}\N{EN DASH}{last} of {total}"


async def test_the_elements_page_pages_and_steps_back_from_a_page_emptied_by_deletes(
    running_system: Any, browser: Browser, samples_dir: Path, tmp_path: Path
) -> None:
    page, document = await elements_created(running_system, browser, "pager", samples_dir, tmp_path)
    rows, pager = page.locator("#elements-table tbody tr"), page.get_by_role("navigation", name="Pages")
    total, per_page = len(document), 20
    await expect(pager).to_contain_text(span(1, per_page, total))
    await expect(pager.get_by_role("button", name="Previous")).to_be_disabled()
    await pager.get_by_role("button", name="Next").click()
    await expect(pager).to_contain_text(span(per_page + 1, 2 * per_page, total))
    await pager.get_by_role("button", name="Next").click()
    await expect(pager).to_contain_text(span(2 * per_page + 1, total, total))
    await expect(rows).to_have_count(total - 2 * per_page)
    await expect(pager.get_by_role("button", name="Next")).to_be_disabled()

    # One device's elements run past one page; delete the second page's rows and the first page comes back.
    [(device, count)] = Counter(e["deviceName"] for e in document.values()).most_common(1)
    assert per_page < count < 2 * per_page
    await page.get_by_label("Device", exact=True).fill(device)
    await page.get_by_role("button", name="Filter").click()
    await expect(pager).to_contain_text(span(1, per_page, count))
    await pager.get_by_role("button", name="Next").click()
    await expect(rows).to_have_count(count - per_page)
    page.on("dialog", lambda dialog: dialog.accept())
    for left in reversed(range(count - per_page)):
        await rows.first.get_by_role("button", name=re.compile("^Delete ")).click()
        await expect(rows).to_have_count(left or per_page)
    await expect(pager).to_have_count(0)


async def test_the_audit_page_is_for_admins_only(running_system: Any, browser: Browser, tmp_path: Path) -> None:
    admin = await running_system.create_user("auditor", role="admin")
    user = await running_system.create_user("nosy")
    admin_page, _ = await open_portal(browser, running_system.gateway_url, admin.email, admin.password)
    await admin_page.get_by_role("link", name="Audit").click()
    await admin_page.get_by_label("Action").fill("auth.login")
    await admin_page.get_by_role("button", name="Apply").click()
    logins = admin_page.locator("table tbody tr").filter(has_text=admin.email)
    await expect(logins.first).to_be_visible()
    await Screenshots(tmp_path).take(admin_page, "desktop-audit")

    user_page, _ = await open_portal(browser, running_system.gateway_url, user.email, user.password)
    await expect(user_page.get_by_role("link", name="Audit")).to_be_hidden()
    await user_page.goto(f"{running_system.gateway_url}/#/audit")
    await expect(user_page.get_by_text("This page is for administrators.")).to_be_visible()


async def test_dropped_files_are_listed_sent_and_rejected_with_their_reasons(
    running_system: Any, browser: Browser
) -> None:
    user = await running_system.create_user("dropper")
    page, _ = await open_portal(browser, running_system.gateway_url, user.email, user.password)
    dropped = await page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(['not dicom '.repeat(200)], 'notes.dcm'));
            transfer.items.add(new File(['<b>also</b> not dicom'], '<img src=x onerror=alert(1)>.dcm'));
            return transfer;
        }"""
    )
    await page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    rows = page.locator("#upload-files tbody tr")
    await expect(rows).to_have_count(2)
    # Names are text, never markup.
    await expect(rows.nth(1).locator("td").first).to_have_text("<img src=x onerror=alert(1)>.dcm")
    assert await page.locator("#upload-files img").count() == 0
    await page.get_by_role("button", name="Upload", exact=True).click()
    await expect(page.locator('#upload-files tbody tr[data-outcome="rejected"]')).to_have_count(2)
    await expect(page.locator("#overall-text")).to_have_text("Sent; 2 file(s) rejected.")
    for index in range(2):
        assert (await rows.nth(index).locator(".reason").inner_text()).strip()
