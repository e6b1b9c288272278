"""The Workers page in Debian's Chromium against the running system (every service a real process): an admin sees
the system's processor with its load, refreshed without a reload; a user is told the page is for administrators."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, expect

from tests.e2e.test_portal_browser import Screenshots, browser, open_portal  # noqa: F401  (fixture, by name)


async def test_an_admin_sees_every_live_worker_and_its_load_and_a_user_does_not(
    running_system: Any,
    browser: Browser,  # noqa: F811  (the portal tests' fixture)
    tmp_path: Path,
) -> None:
    admin = await running_system.create_user("workers-admin", role="admin")
    url = f"{running_system.gateway_url}/api/workers"
    async with aiohttp.ClientSession() as session, session.get(url, headers=admin.headers) as response:
        assert response.status == 200, await response.text()
        listed = await response.json()
    # The system's processor, by the id its results carry (a processor an earlier test killed may still be listed
    # until its silence passes WORKER_STALE_AFTER).
    worker_id = f"{socket.gethostname()}:{running_system.pid('processor_service')}"
    [worker] = [item for item in listed["items"] if item["worker"] == worker_id]

    page, _ = await open_portal(browser, running_system.gateway_url, admin.email, admin.password)
    await page.get_by_role("link", name="Workers").click()
    await expect(page.get_by_role("heading", name="Workers")).to_be_visible()
    table = page.get_by_role("table", name="Live workers, refreshed every 2 seconds")
    row = table.locator(f'tbody tr[data-worker="{worker_id}"]')
    await expect(row).to_have_count(1)
    await expect(table.locator("tbody tr")).to_have_count(len(listed["items"]))
    headers = await table.locator("thead th").all_inner_texts()
    assert headers[:3] == ["Worker", "Queues", "Memory budget"] and "Last seen" in headers
    await expect(row.get_by_role("cell").nth(1)).to_have_text(", ".join(worker["queues"]))
    await expect(row.locator(".badge")).to_have_text("running")
    await expect(row.locator("summary")).to_have_text(f"{len(worker['decoders'])} transfer syntaxes")
    # Refreshed live: the "updated" line changes without the page being reloaded.
    await page.evaluate("window.__sameDocument = true")
    first = await page.locator("#workers-updated").inner_text()
    await expect(page.locator("#workers-updated")).not_to_have_text(first, timeout=10_000)
    assert await page.evaluate("window.__sameDocument") is True
    await Screenshots(tmp_path).take(page, "desktop-workers")

    user = await running_system.create_user("workers-user")
    user_page, _ = await open_portal(browser, running_system.gateway_url, user.email, user.password)
    await expect(user_page.get_by_role("link", name="Workers")).to_be_hidden()
    await user_page.goto(f"{running_system.gateway_url}/#/workers")
    await expect(user_page.get_by_role("heading", name="Not available")).to_be_visible()
