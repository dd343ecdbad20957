"""Every Web API method through the real slack_sdk WebClient: success paths and the
error codes the bot depends on (SLACK-SEMANTICS.md §2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.conftest import ALICE, APP_A, BOT_A, BOT_B, OPS
from troupe.localslack.server import ThreadedLocalSlack
from troupe.localslack.workspace import default_workspace

Clients = Callable[[str], WebClient]


def error_of(call: Callable[[], object]) -> str:
    with pytest.raises(SlackApiError) as info:
        call()
    return str(info.value.response["error"])


def test_auth_test_for_bot_and_person(client_for: Clients) -> None:
    bot = client_for(BOT_A).auth_test()
    assert (bot["user_id"], bot["team_id"], bot["bot_id"][0]) == ("U0TROUPEA", "T0TROUPE", "B")
    assert "pins:write" in bot.headers["x-oauth-scopes"]
    person = client_for(ALICE).auth_test()
    assert (person["user_id"], person["user"]) == ("U0ALICE", "alice")
    assert "bot_id" not in person.data


def test_bad_and_missing_tokens(server: ThreadedLocalSlack, client_for: Clients) -> None:
    assert error_of(lambda: client_for("xoxb-nope").auth_test()) == "invalid_auth"
    assert error_of(lambda: WebClient(base_url=server.api_url).auth_test()) == "not_authed"
    assert error_of(lambda: client_for(APP_A).auth_test()) == "not_allowed_token_type"
    assert error_of(lambda: client_for(BOT_A).apps_connections_open(app_token=BOT_A)) == (
        "not_allowed_token_type"
    )


def test_token_as_a_form_field_and_get_query(server: ThreadedLocalSlack) -> None:
    form = requests.post(server.api_url + "auth.test", data={"token": BOT_A}, timeout=5).json()
    query = requests.get(server.api_url + "auth.test", params={"token": ALICE}, timeout=5).json()
    assert (form["user_id"], query["user_id"]) == ("U0TROUPEA", "U0ALICE")


def test_malformed_requests_get_slack_error_codes(server: ThreadedLocalSlack) -> None:
    url = server.api_url + "chat.postMessage"
    headers = {"Authorization": f"Bearer {BOT_A}", "Content-Type": "application/json"}
    bad_json = requests.post(url, data="{nope", headers=headers, timeout=5)
    not_object = requests.post(url, data="[1, 2]", headers=headers, timeout=5)
    unknown = requests.post(server.api_url + "chat.nope", headers=headers, timeout=5)
    assert bad_json.json() == {"ok": False, "error": "invalid_json"}
    assert not_object.json() == {"ok": False, "error": "json_not_object"}
    assert unknown.json()["error"] == "unknown_method"
    for response in (bad_json, not_object, unknown):
        assert response.headers["Content-Type"].startswith("application/json")


def test_post_message_threads_and_bookkeeping(client_for: Clients) -> None:
    alice, bot = client_for(ALICE), client_for(BOT_A)
    parent = alice.chat_postMessage(channel=OPS, text="deploy web")
    reply = bot.chat_postMessage(channel=OPS, text="on it", thread_ts=parent["ts"])
    nested = alice.chat_postMessage(channel=OPS, text="thanks", thread_ts=reply["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"]
    assert nested["message"]["thread_ts"] == parent["ts"]  # a reply to a reply joins the thread
    assert reply["message"]["bot_id"].startswith("B") and reply["message"]["app_id"] == "A0TROUPEA"
    thread = bot.conversations_replies(channel=OPS, ts=parent["ts"])["messages"]
    assert [m["text"] for m in thread] == ["deploy web", "on it", "thanks"]
    head = thread[0]
    assert (head["reply_count"], head["latest_reply"]) == (2, nested["ts"])
    assert head["reply_users"] == ["U0TROUPEA", "U0ALICE"]
    history = bot.conversations_history(channel=OPS)["messages"]
    assert [m["text"] for m in history] == ["deploy web"]  # replies stay in the thread


def test_ts_strictly_increasing_and_well_formed(client_for: Clients) -> None:
    alice = client_for(ALICE)
    stamps = [alice.chat_postMessage(channel=OPS, text=str(i))["ts"] for i in range(50)]
    assert stamps == sorted(set(stamps))
    assert all(len(s) == 17 and s[10] == "." for s in stamps)


def test_post_message_errors(client_for: Clients) -> None:
    bot = client_for(BOT_A)
    assert error_of(lambda: bot.chat_postMessage(channel="C0NOPE0000", text="x")) == (
        "channel_not_found"
    )
    assert error_of(lambda: bot.chat_postMessage(channel=OPS, text="")) == "no_text"
    assert error_of(lambda: bot.chat_postMessage(channel=OPS, blocks=[{"x": 1}])) == (
        "invalid_blocks"
    )
    assert error_of(lambda: bot.chat_postMessage(channel=OPS, text="a" * 40_001)) == (
        "msg_too_long"
    )
    assert (
        error_of(lambda: bot.chat_postMessage(channel=OPS, text="x", thread_ts="1234567890.123456"))
        == "thread_not_found"
    )


def test_not_in_channel_until_joined(make_server: Callable[..., ThreadedLocalSlack]) -> None:
    base = default_workspace()
    ops = base.channels[0].model_copy(update={"members": ["U0ALICE"]})
    server = make_server(base.model_copy(update={"channels": [ops]}))
    bot = WebClient(token=BOT_A, base_url=server.api_url)
    assert error_of(lambda: bot.chat_postMessage(channel=OPS, text="hi")) == "not_in_channel"
    assert error_of(lambda: bot.conversations_history(channel=OPS)) == "not_in_channel"
    joined = bot.conversations_join(channel=OPS)
    assert joined["channel"]["is_member"] is True
    again = bot.conversations_join(channel=OPS)
    assert again["warning"] == "already_in_channel"
    assert bot.chat_postMessage(channel=OPS, text="hi")["ok"]
    kinds = [m.get("subtype") for m in bot.conversations_history(channel=OPS)["messages"]]
    assert kinds == [None, "channel_join"]
    pin = error_of(
        lambda: bot.pins_add(
            channel=OPS, timestamp=bot.conversations_history(channel=OPS)["messages"][1]["ts"]
        )
    )
    assert pin == "not_pinnable"


def test_update_and_delete_only_own_messages(client_for: Clients) -> None:
    a, b = client_for(BOT_A), client_for(BOT_B)
    ts = a.chat_postMessage(channel=OPS, text="progress 0%")["ts"]
    updated = a.chat_update(channel=OPS, ts=ts, text="progress 50%")
    assert updated["message"]["text"] == "progress 50%" and "edited" in updated["message"]
    assert error_of(lambda: b.chat_update(channel=OPS, ts=ts, text="mine")) == (
        "cant_update_message"
    )
    assert error_of(lambda: b.chat_delete(channel=OPS, ts=ts)) == "cant_delete_message"
    assert a.chat_delete(channel=OPS, ts=ts)["ts"] == ts
    assert error_of(lambda: a.chat_update(channel=OPS, ts=ts, text="x")) == "message_not_found"
    assert error_of(lambda: a.chat_delete(channel=OPS, ts=ts)) == "message_not_found"


def test_post_ephemeral(server: ThreadedLocalSlack, client_for: Clients) -> None:
    bot = client_for(BOT_A)
    result = bot.chat_postEphemeral(channel=OPS, user="U0ALICE", text="only you")
    assert result["message_ts"]
    assert error_of(lambda: bot.chat_postEphemeral(channel=OPS, user="U0NOBODY", text="x")) == (
        "user_not_in_channel"
    )
    shown = requests.get(server.url + "/admin/ephemeral", timeout=5).json()
    assert [(e["user"], e["text"]) for e in shown] == [("U0ALICE", "only you")]
    history = bot.conversations_history(channel=OPS)["messages"]
    assert history == []  # ephemeral messages are not channel messages


def test_pins_add_remove_list(client_for: Clients) -> None:
    a, b = client_for(BOT_A), client_for(BOT_B)
    ts = client_for(ALICE).chat_postMessage(channel=OPS, text="@troupe deploy")["ts"]
    assert a.pins_add(channel=OPS, timestamp=ts)["ok"]
    assert error_of(lambda: b.pins_add(channel=OPS, timestamp=ts)) == "already_pinned"
    items = b.pins_list(channel=OPS)["items"]
    assert [(i["message"]["ts"], i["created_by"]) for i in items] == [(ts, "U0TROUPEA")]
    assert items[0]["message"]["pinned_to"] == [OPS]
    assert b.pins_remove(channel=OPS, timestamp=ts)["ok"]  # pins are channel-wide
    assert error_of(lambda: a.pins_remove(channel=OPS, timestamp=ts)) == "no_pin"
    assert error_of(lambda: a.pins_add(channel=OPS, timestamp="1234567890.123456")) == (
        "message_not_found"
    )
    assert error_of(lambda: a.pins_add(channel=OPS, timestamp="yesterday")) == "bad_timestamp"
    assert error_of(lambda: a.pins_add(channel=OPS)) == "no_item_specified"
    assert error_of(lambda: a.pins_list(channel="C0NOPE0000")) == "channel_not_found"


def test_too_many_pins(client_for: Clients) -> None:
    bot = client_for(BOT_A)
    stamps = [bot.chat_postMessage(channel=OPS, text=str(i))["ts"] for i in range(101)]
    for ts in stamps[:100]:
        bot.pins_add(channel=OPS, timestamp=ts)
    assert error_of(lambda: bot.pins_add(channel=OPS, timestamp=stamps[100])) == "too_many_pins"


def test_reactions(client_for: Clients) -> None:
    a, b = client_for(BOT_A), client_for(BOT_B)
    ts = client_for(ALICE).chat_postMessage(channel=OPS, text="done?")["ts"]
    a.reactions_add(channel=OPS, timestamp=ts, name="white_check_mark")
    b.reactions_add(channel=OPS, timestamp=ts, name=":white_check_mark:")
    got = a.reactions_get(channel=OPS, timestamp=ts)["message"]["reactions"]
    assert got == [{"name": "white_check_mark", "users": ["U0TROUPEA", "U0TROUPEB"], "count": 2}]
    assert (
        error_of(lambda: a.reactions_add(channel=OPS, timestamp=ts, name="white_check_mark"))
        == "already_reacted"
    )
    a.reactions_remove(channel=OPS, timestamp=ts, name="white_check_mark")
    assert (
        error_of(lambda: a.reactions_remove(channel=OPS, timestamp=ts, name="white_check_mark"))
        == "no_reaction"
    )
    assert error_of(lambda: a.reactions_add(channel=OPS, timestamp=ts, name="")) == "invalid_name"
    assert error_of(lambda: a.reactions_get(channel=OPS, timestamp="1234567890.000001")) == (
        "message_not_found"
    )


def test_history_paging(client_for: Clients) -> None:
    alice = client_for(ALICE)
    stamps = [alice.chat_postMessage(channel=OPS, text=str(i))["ts"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page = alice.conversations_history(channel=OPS, limit=3, cursor=cursor)
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert seen == stamps[::-1]
    window = alice.conversations_history(channel=OPS, oldest=stamps[2], latest=stamps[4])
    assert [m["text"] for m in window["messages"]] == ["3"]
    inclusive = alice.conversations_history(
        channel=OPS, oldest=stamps[2], latest=stamps[4], inclusive=True
    )
    assert [m["text"] for m in inclusive["messages"]] == ["4", "3", "2"]
    assert error_of(lambda: alice.conversations_history(channel=OPS, latest="soon")) == (
        "invalid_ts_latest"
    )
    assert error_of(lambda: alice.conversations_history(channel=OPS, cursor="bad!")) == (
        "invalid_cursor"
    )
    assert error_of(lambda: alice.conversations_replies(channel=OPS, ts="1234567890.000001")) == (
        "thread_not_found"
    )


def test_conversations_info_list_and_users(client_for: Clients) -> None:
    bot = client_for(BOT_A)
    info = bot.conversations_info(channel=OPS)["channel"]
    assert (info["id"], info["name"], info["is_member"]) == (OPS, "ops", True)
    listed = bot.conversations_list()["channels"]
    assert [c["id"] for c in listed] == [OPS]
    assert error_of(lambda: bot.conversations_info(channel="C0NOPE0000")) == "channel_not_found"
    alice = bot.users_info(user="U0ALICE")["user"]
    assert (alice["name"], alice["is_bot"]) == ("alice", False)
    peer = bot.users_info(user="U0TROUPEB")["user"]
    assert (peer["is_bot"], peer["profile"]["api_app_id"]) == (True, "A0TROUPEB")
    assert error_of(lambda: bot.users_info(user="U0NOBODY")) == "user_not_found"


def test_apps_connections_open_gives_a_ws_url(server: ThreadedLocalSlack) -> None:
    url = WebClient(base_url=server.api_url).apps_connections_open(app_token=APP_A)["url"]
    assert url.startswith(server.url.replace("http", "ws") + "/link/?ticket=")


def test_deleting_a_thread_parent_leaves_a_tombstone(client_for: Clients) -> None:
    alice, bot = client_for(ALICE), client_for(BOT_A)
    parent = alice.chat_postMessage(channel=OPS, text="deploy")["ts"]
    reply = bot.chat_postMessage(channel=OPS, text="claimed", thread_ts=parent)["ts"]
    alice.chat_delete(channel=OPS, ts=parent)
    thread = bot.conversations_replies(channel=OPS, ts=reply)["messages"]
    assert [(m.get("subtype"), m["text"]) for m in thread] == [
        ("tombstone", "This message was deleted."),
        (None, "claimed"),
    ]
    again = bot.chat_postMessage(channel=OPS, text="still threads", thread_ts=reply)
    assert again["message"]["thread_ts"] == parent


def test_channel_by_name_shares_the_id_budget(
    make_server: Callable[..., ThreadedLocalSlack],
) -> None:
    server = make_server(rate_limit_scale=1)
    alice = WebClient(token=ALICE, base_url=server.api_url)
    codes = []
    for ref in [OPS, "#ops", "ops"] * 3:
        try:
            alice.chat_postMessage(channel=ref, text="x")
            codes.append(200)
        except SlackApiError as exc:
            codes.append(exc.response.status_code)
    assert codes[:5] == [200] * 5 and 429 in codes  # one burst of 5, whatever the spelling
