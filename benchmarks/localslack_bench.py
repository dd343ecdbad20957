"""localslack benchmark: Web API throughput and post→event latency, with the real clients.

Drives localslack (built-in workspace, rate limits off, 127.0.0.1 only) with the unmodified
``slack_sdk`` clients, which only get ``base_url`` pointed at it. The server runs in one of
two modes, and the output says which:

- default, **separate process**, the way fleets run it: the benchmark starts
  ``[sys.executable, "-m", "troupe.cli", "localslack", "--port", PORT, "--rate-limits",
  "off"]`` on a free loopback port (retrying with another port if that one got taken),
  waits until ``api.test`` answers, and at the end, error or not, sends it SIGTERM and
  waits for it (SIGKILL only if it has not exited within ``STOP_WAIT_S``); only that one
  process is ever signalled. Its output goes to a temporary file, shown only if it fails to
  start. The clients are threads of the benchmark process and share its GIL among
  themselves, but not with the server.
- ``--in-process``: an in-process ``ThreadedLocalSlack`` on an ephemeral port. The
  server's event-loop thread and the client threads share the GIL and the CPU, so a figure
  there is "client + server", not the server alone. ``--profile`` needs this mode.

What is measured:

1. Web API throughput, calls/s: ``--threads`` threads, each with its own ``WebClient``
   (alice's user token), call one method in a loop for ``--seconds`` (a warm-up call
   first, and at most ``MAX_CALLS_PER_THREAD`` calls per thread). Methods:

   - ``api.test``: no auth, no state; the baseline for HTTP + client overhead
     (slack_sdk's sync client opens a new TCP connection for every call);
   - ``auth.test``: token lookup;
   - ``chat.postMessage`` to #ops (C0OPS00001), each a thread reply under one parent;
     every post also publishes a ``message`` event to the three apps in #ops (none is
     connected during this part, so the server logs each delivery as ``no_connection``
     and schedules its retries, as it would for an app that is down);
   - ``conversations.history`` of #ops, ``limit=20``. It runs before chat.postMessage,
     on the 20 seeded top-level messages, so the figure does not depend on how many
     replies the post run managed. An extra row, ``same, +N replies``, runs it again
     after the post run: history reads the whole channel, threads included, so its cost
     grows with the channel (that row is information, not judged against the target).

   The table shows calls/s, the ratio to the ``api.test`` baseline (1.00 = the method
   costs nothing beyond HTTP), and mean ms per call as one thread sees it. Figures vary
   by some 20 % from run to run on a small machine; compare ratios rather than absolutes.

2. post→event latency: a builtin ``SocketModeClient`` for app troupe-a (``xapp-troupe-a``)
   acks every envelope and records its arrival time. alice posts ``--posts`` messages to
   #ops one after another; each event is matched to its post by ``event.ts`` == the ts
   that chat.postMessage returned, and the next post waits for that event (so this is
   unloaded latency). Latency = ``time.perf_counter()`` at event arrival in the listener
   minus ``time.perf_counter()`` just before the chat.postMessage call. p50/p99/max in ms.

The summary compares with the targets (throughput >= 500 calls/s for every method, p50
latency <= 20 ms) and says met / not met; the exit status is 0 either way (1 only if
something crashed, including the server process dying before the end).
``--in-process --profile METHOD`` additionally runs cProfile on the server's event-loop
thread during that method's throughput run and prints the top functions; without
``--in-process``, ``--profile`` is refused (the server's loop is in another process).

Run: ``.venv/bin/python benchmarks/localslack_bench.py [--quick] [--in-process]``.
Loopback only; it is bounded in calls and time and stops by itself (SIGTERM or Ctrl-C
stops it early, and still stops the server).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from troupe.localslack.server import Settings, ThreadedLocalSlack
from troupe.localslack.workspace import default_workspace

OPS = "C0OPS00001"
ALICE = "xoxp-alice"
BOT_A = "xoxb-troupe-a"
APP_A = "xapp-troupe-a"
SEED_MESSAGES = 20
HISTORY_LIMIT = 20
MAX_CALLS_PER_THREAD = 50_000
EVENT_WAIT_S = 2.0  # per post: give up on an event after this long
CONNECT_WAIT_S = 10.0
BARRIER_WAIT_S = 30.0
TARGET_CALLS_PER_S = 500.0
TARGET_P50_MS = 20.0
HISTORY = "conversations.history"
METHODS = ("api.test", "auth.test", "chat.postMessage", HISTORY)
LOOPBACK = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # cwd of the server process
START_WAIT_S = 30.0  # per attempt: the server process must answer api.test by then
START_ATTEMPTS = 3  # new free port each time, in case another process took the last one
STOP_WAIT_S = 10.0  # after SIGTERM, before SIGKILL
PROBE_TIMEOUT_S = 1.0

Call = Callable[[WebClient], object]


@dataclass(frozen=True)
class Options:
    threads: int
    seconds: float
    posts: int
    latency_budget_s: float
    profile: str | None
    in_process: bool


@dataclass(frozen=True)
class Throughput:
    method: str
    calls: int
    elapsed: float
    threads: int

    @property
    def per_second(self) -> float:
        return self.calls / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ms_per_call(self) -> float:
        """Mean time one thread waits for one call."""
        return 1000 * self.elapsed * self.threads / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class Row:
    """One line of the throughput table; `counts` = judged against the target."""

    label: str
    result: Throughput
    counts: bool = True


@dataclass
class Latency:
    samples_ms: list[float] = field(default_factory=list)
    posted: int = 0
    lost: int = 0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))
        return ordered[index]


# ---- the server under test --------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running localslack as the benchmark sees it."""

    url: str  # http://127.0.0.1:PORT
    mode: str  # short, for table titles: "separate process" | "in-process"
    description: str  # the full story, printed once at the start
    threaded: ThreadedLocalSlack | None = None  # in-process mode only (for --profile)

    @property
    def api_url(self) -> str:
        return self.url + "/api/"


@contextlib.contextmanager
def in_process_server() -> Iterator[Server]:
    threaded = ThreadedLocalSlack(default_workspace(), Settings(port=0, rate_limit_scale=0))
    threaded.start()
    try:
        yield Server(
            threaded.url,
            "in-process",
            f"in-process ThreadedLocalSlack at {threaded.url}, rate limits off.\n"
            "  NOTE: the server's event-loop thread shares this process's GIL and CPU with the"
            " client threads,\n  so every figure is client + server, not the server alone.",
            threaded,
        )
    finally:
        threaded.stop()


def server_command(port: int) -> list[str]:
    """How fleets run it (``troupe localslack``), rate limits off."""
    command = [sys.executable, "-m", "troupe.cli", "localslack"]
    return [*command, "--port", str(port), "--rate-limits", "off"]


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def api_test_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/api.test", timeout=PROBE_TIMEOUT_S) as resp:
            return json.load(resp).get("ok") is True
    except (OSError, ValueError):  # refused, reset, timed out, not JSON yet
        return False


def wait_until_up(proc: subprocess.Popen[bytes], url: str) -> bool:
    """True once `url` answers api.test while `proc` runs; False if `proc` exits first."""
    deadline = time.monotonic() + START_WAIT_S
    while proc.poll() is None:
        if api_test_answers(url):
            return proc.poll() is None
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"localslack (pid {proc.pid}) did not answer api.test at {url} "
                f"within {START_WAIT_S:.0f} s"
            )
        time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM `proc` (only it) and wait; SIGKILL if it ignores that. Its exit status
    (negative: killed by that signal, as subprocess reports it)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(STOP_WAIT_S)


def _status(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


def _tail(log: IO[bytes], lines: int = 20) -> str:
    log.seek(0)
    text = log.read().decode("utf-8", "replace").rstrip()
    return "\n".join("  | " + line for line in text.splitlines()[-lines:]) or "  | (no output)"


@contextlib.contextmanager
def separate_process_server() -> Iterator[Server]:
    """`troupe localslack` as a child process on a free loopback port; stopped on exit."""
    with tempfile.TemporaryFile() as log:
        for _attempt in range(START_ATTEMPTS):
            port = free_loopback_port()
            command = server_command(port)
            url = f"http://{LOOPBACK}:{port}"
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,  # a file, not a pipe: a pipe nobody reads could stall the server
                stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT,
            )
            try:
                up = wait_until_up(proc, url)
            except BaseException:
                stop_process(proc)
                raise
            if up:
                break
            status = stop_process(proc)  # exited early, e.g. the port was taken meanwhile
            print(
                f"localslack on port {port} ended ({_status(status)}) before answering "
                "api.test; trying another port",
                file=sys.stderr,
            )
        else:
            raise RuntimeError(
                f"localslack did not start in {START_ATTEMPTS} attempts; its output:\n" + _tail(log)
            )
        early = None
        try:
            yield Server(
                url,
                "separate process",
                f"separate process (pid {proc.pid}) at {url}, rate limits off:\n"
                f"  {shlex.join(command)}\n"
                "  the client threads share this process's GIL among themselves, not with "
                "the server.",
            )
        finally:
            early = proc.poll()
            status = stop_process(proc)
            if early is None:
                print(f"\nlocalslack process {proc.pid} stopped by SIGTERM: {_status(status)}")
            else:
                print(
                    f"\nlocalslack process {proc.pid} ended on its own ({_status(early)}) "
                    "before the benchmark did; its output:\n" + _tail(log),
                    file=sys.stderr,
                )
        if early is not None:
            raise RuntimeError(f"localslack process {proc.pid} ended before the benchmark did")


def start_server(opts: Options) -> contextlib.AbstractContextManager[Server]:
    return in_process_server() if opts.in_process else separate_process_server()


# ---- Web API throughput -----------------------------------------------------------------------


def method_calls(parent_ts: str) -> dict[str, Call]:
    """One Web API call per benchmarked method, as a bot or script would make it."""
    return {
        "api.test": lambda c: c.api_test(),
        "auth.test": lambda c: c.auth_test(),
        "chat.postMessage": lambda c: c.chat_postMessage(
            channel=OPS, text="bench reply", thread_ts=parent_ts
        ),
        "conversations.history": lambda c: c.conversations_history(
            channel=OPS, limit=HISTORY_LIMIT
        ),
    }


def seed_channel(api_url: str) -> str:
    """Post the top-level messages history pages over; return the first one's ts (the parent)."""
    alice = WebClient(token=ALICE, base_url=api_url)
    first = ""
    for n in range(SEED_MESSAGES):
        ts = str(alice.chat_postMessage(channel=OPS, text=f"bench seed {n}")["ts"])
        first = first or ts
    return first


def _worker(client: WebClient, call: Call, start: threading.Barrier, deadline: list[float]) -> int:
    try:
        call(client)  # warm-up, not counted
    except BaseException:
        start.abort()  # release the other workers instead of leaving them at the barrier
        raise
    start.wait(BARRIER_WAIT_S)
    calls = 0
    while calls < MAX_CALLS_PER_THREAD and time.perf_counter() < deadline[0]:
        call(client)
        calls += 1
    return calls


def measure_throughput(api_url: str, method: str, call: Call, opts: Options) -> Throughput:
    """`opts.threads` clients call `call` in a loop for `opts.seconds`; count the calls."""
    clients = [WebClient(token=ALICE, base_url=api_url) for _ in range(opts.threads)]
    deadline = [float("inf")]

    def begin() -> None:  # runs once, when every worker has warmed up
        deadline[0] = time.perf_counter() + opts.seconds

    start = threading.Barrier(opts.threads, action=begin)
    with ThreadPoolExecutor(max_workers=opts.threads) as pool:
        futures = [pool.submit(_worker, c, call, start, deadline) for c in clients]
        calls = sum(f.result() for f in futures)
    elapsed = time.perf_counter() - (deadline[0] - opts.seconds)
    return Throughput(method, calls, elapsed, opts.threads)


def profiled(server: ThreadedLocalSlack, run: Callable[[], Throughput]) -> Throughput:
    """Run `run` with cProfile enabled on the server's event-loop thread; print the top."""
    profiler = cProfile.Profile()
    server.call(profiler.enable)  # enable() hooks the thread it is called on: the loop's
    try:
        result = run()
    finally:
        server.call(profiler.disable)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)
    print(f"\n--- cProfile of the server loop thread during {result.method} ---")
    print(out.getvalue())
    return result


def _measure(server: Server, method: str, call: Call, opts: Options) -> Throughput:
    def run() -> Throughput:
        return measure_throughput(server.api_url, method, call, opts)

    if opts.profile == method and server.threaded is not None:
        return profiled(server.threaded, run)
    return run()


def ops_messages(server: Server) -> int:
    """Messages and replies now stored in #ops (localslack's /admin/channels, either mode)."""
    url = f"{server.url}/admin/channels?channel={OPS}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        channels = json.load(resp)
    return int(channels[0]["messages"])


def run_throughput(server: Server, opts: Options) -> list[Row]:
    """The four methods, in METHODS order in the table. conversations.history runs before
    chat.postMessage, on the seeded channel, so its figure does not depend on how many
    replies the post run managed; it then runs again on the grown channel (extra row)."""
    calls = method_calls(seed_channel(server.api_url))
    done: dict[str, Throughput] = {}
    for method in ("api.test", "auth.test", "conversations.history", "chat.postMessage"):
        done[method] = _measure(server, method, calls[method], opts)
    rows = [Row(m, done[m]) for m in METHODS]
    replies = ops_messages(server) - SEED_MESSAGES
    grown = measure_throughput(server.api_url, HISTORY, calls[HISTORY], opts)
    rows.append(Row(f"  same, +{replies} replies", grown, counts=False))
    return rows


# ---- post→event latency -----------------------------------------------------------------------


class EventClock:
    """Socket Mode listener: acks every envelope and timestamps `message` events by ts."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.hello = threading.Event()
        self._changed = threading.Condition()

    def on_message(
        self, client: BaseSocketModeClient, message: dict[str, object], raw: str | None
    ) -> None:
        if message.get("type") == "hello":
            self.hello.set()

    def on_request(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        now = time.perf_counter()
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        event = req.payload.get("event") if req.type == "events_api" else None
        if isinstance(event, dict) and event.get("type") == "message" and "subtype" not in event:
            with self._changed:
                self.arrived.setdefault(str(event.get("ts")), now)
                self._changed.notify_all()

    def wait_for(self, ts: str, timeout: float) -> float | None:
        with self._changed:
            self._changed.wait_for(lambda: ts in self.arrived, timeout)
            return self.arrived.get(ts)


def connect_app(api_url: str, clock: EventClock) -> SocketModeClient:
    client = SocketModeClient(app_token=APP_A, web_client=WebClient(token=BOT_A, base_url=api_url))
    client.message_listeners.append(clock.on_message)
    client.socket_mode_request_listeners.append(clock.on_request)
    client.connect()
    if not clock.hello.wait(CONNECT_WAIT_S):
        client.close()
        raise RuntimeError(f"no Socket Mode hello within {CONNECT_WAIT_S} s")
    return client


def measure_latency(api_url: str, opts: Options) -> Latency:
    clock = EventClock()
    socket_client = connect_app(api_url, clock)
    alice = WebClient(token=ALICE, base_url=api_url)
    result = Latency()
    stop_at = time.perf_counter() + opts.latency_budget_s
    try:
        for n in range(opts.posts):
            if time.perf_counter() > stop_at:
                break
            sent = time.perf_counter()
            ts = str(alice.chat_postMessage(channel=OPS, text=f"bench latency {n}")["ts"])
            result.posted += 1
            arrived = clock.wait_for(ts, EVENT_WAIT_S)
            if arrived is None:
                result.lost += 1
            else:
                result.samples_ms.append(1000 * (arrived - sent))
    finally:
        socket_client.close()
    return result


# ---- report -------------------------------------------------------------------------------------


def print_throughput(rows: list[Row], mode: str) -> None:
    base = rows[0].result.per_second or 1.0
    threads = rows[0].result.threads
    print(f"\nWeb API throughput, server {mode} ({threads} threads, one WebClient each)")
    print(f"{'method':<28}{'calls':>8}{'calls/s':>10}{'vs api.test':>13}{'ms/call':>10}")
    for row in rows:
        r = row.result
        ratio = r.per_second / base
        print(
            f"{row.label:<28}{r.calls:>8}{r.per_second:>10.0f}{ratio:>13.2f}{r.ms_per_call:>10.2f}"
        )


def print_latency(lat: Latency, mode: str) -> None:
    print(
        f"\npost→event latency, server {mode} "
        f"(Socket Mode, app troupe-a, {lat.posted} sequential posts)"
    )
    if not lat.samples_ms:
        print(f"  no events received ({lat.lost} lost)")
        return
    print(
        f"  p50 {lat.percentile(50):.2f} ms   p99 {lat.percentile(99):.2f} ms   "
        f"max {max(lat.samples_ms):.2f} ms   mean {statistics.fmean(lat.samples_ms):.2f} ms   "
        f"lost {lat.lost}"
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_summary(rows: list[Row], lat: Latency, mode: str) -> None:
    print(f"\nSummary against targets, server {mode}")
    target = f"(>= {TARGET_CALLS_PER_S:.0f} calls/s)"
    for row in rows:
        if row.counts:
            rate = row.result.per_second
            verdict = _verdict(rate >= TARGET_CALLS_PER_S)
            print(f"  {row.label:<24}{rate:>10.0f} calls/s  {target:<22}{verdict}")
    p50 = lat.percentile(50)
    ok = bool(lat.samples_ms) and p50 <= TARGET_P50_MS and lat.lost == 0
    lost = f"  ({lat.lost} events lost)" if lat.lost else ""
    target = f"(<= {TARGET_P50_MS:.0f} ms)"
    print(f"  {'post→event p50':<24}{p50:>10.2f} ms       {target:<22}{_verdict(ok)}{lost}")


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (1 s per method, 50 posts)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--seconds", type=float, help="seconds per method (default 3)")
    parser.add_argument("--posts", type=int, help="posts for the latency run (default 200)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the server in this process (shares the GIL with the clients) instead of "
        "as its own process",
    )
    parser.add_argument(
        "--profile",
        choices=METHODS,
        help="cProfile the server's event loop during METHOD (needs --in-process)",
    )
    ns = parser.parse_args(argv)
    if ns.profile and not ns.in_process:
        parser.error(
            "--profile needs --in-process: it profiles the server's event-loop thread, which "
            "only runs in this process in --in-process mode (the default runs the server as "
            "its own process)"
        )
    seconds = ns.seconds or (1.0 if ns.quick else 3.0)
    posts = ns.posts or (50 if ns.quick else 200)
    return Options(
        threads=max(1, ns.threads),
        seconds=min(max(0.1, seconds), 60.0),
        posts=min(max(1, posts), 10_000),
        latency_budget_s=30.0 if ns.quick else 60.0,
        profile=ns.profile,
        in_process=ns.in_process,
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the server


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with start_server(opts) as server:
        print(f"localslack server: {server.description}")
        print(f"  {os.cpu_count()} CPUs; {opts.seconds:g} s per method, up to {opts.posts} posts")
        rows = run_throughput(server, opts)
        print_throughput(rows, server.mode)
        latency = measure_latency(server.api_url, opts)
        print_latency(latency, server.mode)
    print_summary(rows, latency, server.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
