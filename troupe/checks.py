"""Health checks: an HTTP request from here, or a command on the host (edge)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from troupe.errors import RemoteError
from troupe.playbooks import Check
from troupe.remote import Remote


@dataclass(frozen=True)
class Probe:
    """A check with its templates rendered for one host."""

    check: Check
    url: str | None = None
    command: str | None = None
    body: str | None = None  # the text the HTTP body must contain, rendered


def run_check(probe: Probe, remote: Remote, stop: Callable[[], bool]) -> tuple[bool, str]:
    """Try up to `retries + 1` times, `interval` apart; (passed, what the last try saw)."""
    detail = ""
    for attempt in range(probe.check.retries + 1):
        if attempt:
            time.sleep(probe.check.interval)
        if stop():
            return False, "stopped"
        passed, detail = _once(probe, remote)
        if passed:
            return True, detail
    return False, detail


def _once(probe: Probe, remote: Remote) -> tuple[bool, str]:
    if probe.url is not None:
        return _http(probe.url, probe.check, probe.body)
    try:
        result = remote.run(probe.command or "", timeout=probe.check.timeout)
    except RemoteError as exc:
        return False, str(exc)
    return result.exit_code == probe.check.expected, f"exit {result.exit_code}"


def _http(url: str, check: Check, expected_body: str | None) -> tuple[bool, str]:
    if not url.startswith(("http://", "https://")):
        return False, f"not an http(s) URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=check.timeout) as response:  # noqa: S310 (scheme checked)
            status, body = response.status, response.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, ""
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"
    if status != check.expected:
        return False, f"HTTP {status}, expected {check.expected}"
    if expected_body is not None and expected_body not in body:
        return False, f"HTTP {status}, body lacks {expected_body!r}"
    return True, f"HTTP {status}"
