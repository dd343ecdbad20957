"""The newcomer's tour, in headless Chromium against `troupe sandbox` (started as `make run`
starts it): type a deploy into the chat page, see one replica claim it (side panel and
📌), see the progress grid, click Approve, see the ✅. Screenshots: tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import chromium, page_of, screenshot
from tests.e2e.sandbox import SandboxProcess

pytestmark = pytest.mark.integration  # real processes on loopback

REPLICAS = {"troupe-a", "troupe-b", "troupe-c"}
COMMAND = "troupe deploy canary version=2.0.0"
SLOW = 90_000  # ms: a canary over five hosts, with a check and a pause before the approval
SOON = 30_000  # ms: what a loaded two-core CI machine may need for a claim or a roll call


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    box = SandboxProcess(tmp_path / "sandbox.out")
    try:
        yield box
    except BaseException:
        print(box.logs())
        raise
    finally:
        box.close()


def _thread_of(page: Page, command: Locator) -> Locator:
    command.get_by_role("button", name=re.compile(r"repl(y|ies): open the thread")).click()
    return page.locator("#thread-messages")


@pytest.mark.timeout(300)
def test_deploy_from_the_chat_page_claim_progress_approve_done(sandbox: SandboxProcess) -> None:
    with chromium() as browser, page_of(browser, sandbox.url + "/") as page:
        # The side panel: three connected apps, each replica answered the roll call.
        expect(page.locator("#apps .dot.up")).to_have_count(3, timeout=SOON)
        expect(page.locator("#apps [data-replica]")).to_have_count(3, timeout=SOON)

        box = page.get_by_label("Message #ops")
        box.fill(COMMAND)
        box.press("Enter")
        command = page.locator("#messages li.message", has_text=COMMAND)
        expect(command).to_have_count(1)
        ts = command.get_attribute("data-ts")

        # Claimed by exactly one replica: pinned by it, and named in the side panel.
        claim = page.locator(f"#claims li[data-ts='{ts}']")
        expect(claim).to_have_attribute("data-replica", re.compile("^troupe-[abc]$"), timeout=SOON)
        owner = claim.get_attribute("data-replica")
        assert owner in REPLICAS
        expect(command.locator(".pinned")).to_have_text(f"📌 pinned by {owner}", timeout=SOON)
        thread = _thread_of(page, command)
        claims = thread.locator("li.message", has_text="🔒 claimed by")
        expect(claims).to_have_count(1, timeout=SOON)
        expect(claims).to_contain_text(f"🔒 claimed by {owner} · generation 1")

        # The progress grid (a code block of hosts, edited in place) and the Approve button.
        # A grid line is "<status> web1  <status> web2 ..." (the plan's text has no such line).
        grid = thread.locator("pre", has_text=re.compile(r"\S web1 +\S web2"))
        expect(grid.first).to_be_visible(timeout=SLOW)
        approve = thread.locator("[data-action-id='approve']")
        expect(approve.first).to_be_visible(timeout=SLOW)
        screenshot(page, "sandbox-approval")
        approve.first.click()

        done = page.locator(
            f"#messages li.message[data-ts='{ts}'] [data-reaction='white_check_mark']"
        )
        expect(done).to_be_visible(timeout=SLOW)
        expect(
            page.locator(f"#messages li.message[data-ts='{ts}'] [data-reaction='x']")
        ).to_have_count(0)
        every_host_ok = re.compile(r"✓ web1\s+✓ web2\s+✓ web3\s+✓ web4\s+✓ web5")
        expect(grid.first).to_have_text(every_host_ok, timeout=SOON)
        grid.first.scroll_into_view_if_needed()
        screenshot(page, "sandbox-done")
