"""Edge: the Slack Web API as the claim protocol and the reports use it.

Transient trouble — rate limits (429 + Retry-After), 5xx, `internal_error`-style
answers, dropped connections — is retried inside slack_sdk's WebClient by its
retry handlers, so callers only see definitive answers. Those become SlackError
(with the method and Slack's error code); `already_pinned` and friends are
ordinary results of the helpers below, not exceptions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from troupe import metrics
from troupe.errors import RateLimited, SlackError

# Answers that say "try again", not "no": Slack documents these as transient.
TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
MAX_BACKOFF = 5.0  # seconds: twelve tries then span about a minute, not hours


class CappedBackoff(BackoffRetryIntervalCalculator):
    """slack_sdk's exponential backoff with jitter, capped: an outage of Slack (or of
    localslack) is waited out for about a minute, then reported, instead of the
    doubling intervals growing for hours."""

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        return min(MAX_BACKOFF, super().calculate_sleep_duration(current_attempt))


_BACKOFF = CappedBackoff(backoff_factor=0.2)


_calls = threading.local()  # per thread: did the current call retry an attempt that may
# have taken effect? (slack_sdk's sync client runs a call's retries on the caller's thread)


class _MayHaveTakenEffect(RetryHandler):
    """A retry after an attempt Slack may have carried out (the answer, not the request,
    was lost). Chat.pin reads it: `already_pinned` then may mean "we pinned it"."""

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        _calls.retried = True
        super().prepare_for_next_attempt(
            state=state, request=request, response=response, error=error
        )


class RetriedConnectionErrorHandler(_MayHaveTakenEffect, ConnectionErrorRetryHandler):
    """slack_sdk's connection-error handler (a request may be sent, its answer lost)."""


class TransientErrorRetryHandler(_MayHaveTakenEffect):
    """Retries HTTP 200 answers whose `error` is transient (slack_sdk's own handlers
    cover connection errors, 429 and 5xx, but not these)."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        body: dict[str, Any] = (response.body if response is not None else None) or {}
        return body.get("ok") is False and body.get("error") in TRANSIENT


class GatewayErrorRetryHandler(_MayHaveTakenEffect, ServerErrorRetryHandler):
    """slack_sdk's handler retries 500 and 503; a proxy's 502 and 504 are as transient."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in (500, 502, 503, 504)


class CountedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (waits Retry-After), counting the waits for /metrics."""

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        started = time.monotonic()
        try:
            super().prepare_for_next_attempt(
                state=state, request=request, response=response, error=error
            )
        finally:
            metrics.RATE_LIMIT_WAITS.labels(request.url.rsplit("/", 1)[-1]).inc()
            metrics.RATE_LIMIT_WAIT_SECONDS.inc(time.monotonic() - started)


def retry_handlers(patience: int = 12) -> list[RetryHandler]:
    """Handlers for every WebClient Troupe makes. slack_sdk counts attempts across all
    handlers of a call, so `patience` bounds the retries of one call in total."""
    return [
        RetriedConnectionErrorHandler(max_retry_count=patience, interval_calculator=_BACKOFF),
        CountedRateLimitRetryHandler(max_retry_count=patience),
        GatewayErrorRetryHandler(max_retry_count=patience, interval_calculator=_BACKOFF),
        TransientErrorRetryHandler(max_retry_count=patience, interval_calculator=_BACKOFF),
    ]


def make_client(token: str, base_url: str | None = None, timeout: int = 30) -> WebClient:
    """A WebClient with Troupe's retry policy; `base_url` points it at localslack."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    return WebClient(token=token, timeout=timeout, retry_handlers=retry_handlers(), **kwargs)


_JSON_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})


class Chat:
    """One channel, seen through one client."""

    def __init__(self, client: WebClient, channel: str) -> None:
        self.client = client
        self.channel = channel

    def call(self, method: str, **args: Any) -> dict[str, Any]:
        """Call a Web API method the way slack_sdk's typed method does: JSON for the
        chat.* writes Slack documents JSON for, form fields for everything else."""
        args = {k: v for k, v in args.items() if v is not None}
        payload = {"json": args} if method in _JSON_METHODS else {"params": args}
        try:
            return dict(self.client.api_call(method, **payload).data)  # type: ignore[arg-type]
        except SlackApiError as exc:
            error = _translate(method, exc)
            metrics.SLACK_API_ERRORS.labels(method, error.error).inc()
            raise error from exc
        except OSError as exc:  # still unreachable after the connection retries
            metrics.SLACK_API_ERRORS.labels(method, "unreachable").inc()
            reason = getattr(exc, "reason", None) or exc
            raise SlackError(method, f"cannot reach {self.client.base_url} ({reason})") from exc

    # ---- what the protocol needs -------------------------------------------------------

    def pin(self, ts: str) -> bool:
        """Test-and-set: True if this call pinned it, False if it was already pinned.
        `already_pinned` after a retry of an attempt that may have taken effect counts
        as pinned by us: the claim records decide between two "winners" anyway (the
        protocol never trusts the pin alone), while a wrong False would leave the
        command unclaimed until orphan_grace."""
        _calls.retried = False
        try:
            self.call("pins.add", channel=self.channel, timestamp=ts)
        except SlackError as exc:
            if exc.error == "already_pinned":
                return bool(getattr(_calls, "retried", False))
            raise
        return True

    def unpin(self, ts: str) -> None:
        """Remove the pin; a pin that is already gone is fine (someone else released it)."""
        try:
            self.call("pins.remove", channel=self.channel, timestamp=ts)
        except SlackError as exc:
            if exc.error not in ("no_pin", "not_pinned", "message_not_found"):
                raise

    def pinned(self) -> set[str]:
        return {m["ts"] for m in self.pinned_messages()}

    def pinned_messages(self) -> list[dict[str, Any]]:
        items = self.call("pins.list", channel=self.channel).get("items", [])
        return [i["message"] for i in items if i.get("type") == "message"]

    def post(self, text: str, thread_ts: str | None = None, **extra: Any) -> str:
        args: dict[str, Any] = {"channel": self.channel, "text": text, **extra}
        if thread_ts:
            args["thread_ts"] = thread_ts
        return str(self.call("chat.postMessage", **args)["ts"])

    def update(self, ts: str, text: str, **extra: Any) -> None:
        self.call("chat.update", channel=self.channel, ts=ts, text=text, **extra)

    def react(self, ts: str, name: str) -> None:
        try:
            self.call("reactions.add", channel=self.channel, timestamp=ts, name=name)
        except SlackError as exc:
            if exc.error != "already_reacted":
                raise

    def thread(self, ts: str) -> list[dict[str, Any]]:
        """The parent and every reply, oldest first."""
        return list(self._pages("conversations.replies", ts=ts, limit=200))

    def history(
        self, oldest: str | None = None, limit: int = 200, pages: int = 1
    ) -> list[dict[str, Any]]:
        """Top-level messages newer than `oldest`, newest first: up to `pages` pages of
        `limit` (conversations.history is Tier 3: each page is a call)."""
        found: list[dict[str, Any]] = []
        # Lazy: a page is fetched only when the one before was used up.
        messages = self._pages("conversations.history", limit=limit, oldest=oldest)
        for count, message in enumerate(messages):
            if count >= pages * limit:
                break
            found.append(message)
        return found

    def _pages(self, method: str, **args: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.call(method, channel=self.channel, cursor=cursor, **args)
            yield from page.get("messages", [])
            cursor = page.get("response_metadata", {}).get("next_cursor")
            if not cursor:
                return


def _translate(method: str, exc: SlackApiError) -> SlackError:
    response = exc.response
    if response.status_code == 429:
        return RateLimited(method, float(response.headers.get("Retry-After", 1)))
    error = response.get("error") if isinstance(response.data, dict) else None
    return SlackError(method, str(error or f"HTTP {response.status_code}"))
