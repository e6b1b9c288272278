"""The portal's password pages in Debian's Chromium against the running system (every service a real process).

An admin resets a user's password; logging in with the temporary one leads to the change form and nowhere
else; once changed, the portal works with the live feed, and the new password is the one that logs in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.e2e.test_portal_browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, Screenshots, open_portal

NEW_PASSWORD = "my own new passphrase"


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, as the portal's other browser tests drive it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium).", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def reset_password(running_system: Any, user_id: str) -> str:
    """An operator's reset (what `dicomflow users reset-password` does): the generated temporary password."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{running_system.results_url}/internal/users/{user_id}/password-reset",
            json={},
            headers=running_system.service_headers(),
        ) as response,
    ):
        assert response.status == 200, await response.text()
        temporary: str = (await response.json())["temporary_password"]
        return temporary


async def log_in(page: Page, email: str, password: str) -> None:
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Log in").click()


async def test_a_reset_password_leads_to_the_change_form_and_the_new_one_logs_in(
    running_system: Any, chromium: Browser, tmp_path: Path
) -> None:
    base_url = running_system.gateway_url
    user = await running_system.create_user("reset")
    temporary = await reset_password(running_system, user.id)
    context = await chromium.new_context(viewport={"width": DESKTOP["width"], "height": DESKTOP["height"]})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(15_000)

    await page.goto(f"{base_url}/")
    await log_in(page, user.email, user.password)
    await expect(page.get_by_text("The e-mail address or the password is wrong.")).to_be_visible()
    await log_in(page, user.email, temporary)
    await expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    await expect(page.get_by_text("An administrator has reset your password.")).to_be_visible()
    await expect(page.locator("#nav")).to_be_hidden()
    await Screenshots(tmp_path).take(page, "desktop-must-change-password")
    # No other page while the password must change.
    await page.goto(f"{base_url}/#/instances")
    await expect(page.get_by_role("heading", name="Change password")).to_be_visible()

    await page.get_by_label("Current password").fill(temporary)
    await page.get_by_label("New password", exact=True).fill("too short")
    await page.get_by_label("New password again").fill("too short")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("alert")).to_have_text("The new password must have at least 12 characters.")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("heading", name="Upload")).to_be_visible()
    await expect(page.locator("#nav")).to_be_visible()
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")

    # The form from the header: a wrong current password is said so, and changes nothing.
    await page.get_by_role("link", name="Change password").click()
    await page.get_by_label("Current password").fill("not my password")
    await page.get_by_label("New password", exact=True).fill("yet another passphrase")
    await page.get_by_label("New password again").fill("yet another passphrase")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("alert")).to_have_text("The current password is not correct.")
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert errors == [], errors
    await context.close()

    page, _ = await open_portal(chromium, base_url, user.email, NEW_PASSWORD)
    await expect(page.locator("#nav")).to_be_visible()
