"""troupe.approvals: decisions read from a thread — clicks, 👍 and replies (pure)."""

from __future__ import annotations

from typing import Any

from troupe.approvals import Decision, click_text, decisions

FLEET = {"U0BOT"}


def verb(text: str) -> str | None:
    words = text.split()
    return words[1] if len(words) == 2 and words[0] == "troupe" else None


def test_clicks_reactions_and_replies_after_the_approval_message() -> None:
    thread: list[dict[str, Any]] = [
        {"ts": "1.000001", "user": "U0ALICE", "text": "troupe deploy canary"},
        {"ts": "1.000002", "user": "U0BOB", "text": "troupe abort"},  # before: not counted
        {
            "ts": "1.000003",
            "user": "U0BOT",
            "text": ":raised_hand: Approval needed",
            "reactions": [{"name": "+1", "users": ["U0CAROL"]}, {"name": "eyes", "users": ["U0X"]}],
        },
        {"ts": "1.000004", "user": "U0BOT", "text": click_text("U0BOB", "approve")},
        {"ts": "1.000005", "user": "U0MALLORY", "text": click_text("U0BOB", "approve")},  # forged
        {"ts": "1.000006", "user": "U0DAVE", "text": "troupe abort"},
        {"ts": "1.000007", "user": "U0DAVE", "text": "lgtm"},
    ]
    found = decisions(thread, "1.000003", FLEET, verb, reactions_on="1.000003")
    assert found == [
        Decision("U0CAROL", "approve", "reaction", "reaction:U0CAROL"),
        Decision("U0BOB", "approve", "button", "button:1.000004"),
        Decision("U0DAVE", "abort", "reply", "reply:1.000006"),
    ]
    assert str(found[1]) == "approve by <@U0BOB> (button)"


def test_reactions_count_only_on_the_pending_approval_message() -> None:
    thread = [
        {
            "ts": "1.000003",
            "user": "U0BOT",
            "text": "x",
            "reactions": [{"name": "+1", "users": ["U0C"]}],
        }
    ]
    assert decisions(thread, "1.000001", FLEET, verb) == []
