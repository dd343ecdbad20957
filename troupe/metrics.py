"""The replica's Prometheus metrics, served at `/metrics` by troupe.health.

Every metric lives in this module's own registry, not prometheus_client's global one, so
that a test (or a library user) importing Troupe twice in a process registers nothing
twice, and `/metrics` shows Troupe's metrics and the process collector only.

The names are the interface: other modules increment them where the thing happens.

| Object | Prometheus name | Labels |
|---|---|---|
| `COMMANDS_CLAIMED` | `troupe_commands_claimed_total` | `verb` |
| `CLAIMS_LOST` | `troupe_claims_lost_total` | |
| `TAKEOVERS` | `troupe_takeovers_total` | |
| `DEPLOY_SECONDS` | `troupe_deploy_seconds` (histogram) | `outcome` |
| `SLACK_API_ERRORS` | `troupe_slack_api_errors_total` | `method`, `error` |
| `RATE_LIMIT_WAITS` | `troupe_rate_limit_waits_total` | `method` |
| `RATE_LIMIT_WAIT_SECONDS` | `troupe_rate_limit_wait_seconds_total` | |
| `BUILD_INFO` | `troupe_build_info` (gauge, 1) | `version`, `replica` |
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# The `*_created` timestamps double the output and no alert uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # memory, CPU, open files: the usual process alerts

COMMANDS_CLAIMED = Counter(
    "troupe_commands_claimed",
    "Commands this replica claimed (won the pin race or took over), by verb.",
    ["verb"],
    registry=REGISTRY,
)
CLAIMS_LOST = Counter(
    "troupe_claims_lost",
    "Pin races this replica lost (already_pinned): another replica had the command.",
    registry=REGISTRY,
)
TAKEOVERS = Counter(
    "troupe_takeovers",
    "Commands this replica took over after their owner's lease ran out.",
    registry=REGISTRY,
)
# Deploys take seconds to an hour: buckets from 1 s to 2 h.
DEPLOY_SECONDS = Histogram(
    "troupe_deploy_seconds",
    "How long deploys run on this replica, by outcome.",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
    registry=REGISTRY,
)
SLACK_API_ERRORS = Counter(
    "troupe_slack_api_errors",
    "Slack Web API calls that ended in an error after retries, by method and error code.",
    ["method", "error"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS = Counter(
    "troupe_rate_limit_waits",
    "Times a Slack call waited for Retry-After after a 429, by method.",
    ["method"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "troupe_rate_limit_wait_seconds",
    "Seconds spent waiting out Slack rate limits.",
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "troupe_build_info",
    "Always 1; the labels say which version this replica runs.",
    ["version", "replica"],
    registry=REGISTRY,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition() -> bytes:
    """Every metric in the Prometheus text format."""
    return generate_latest(REGISTRY)
