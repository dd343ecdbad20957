"""localslack's HTTP edge: Web API, Socket Mode, response URLs and admin endpoints (aiohttp).

Routes::

    GET      /, /static/…, /web/…       the web chat page for people (see webchat.py)
    GET|POST /api/{method}              Slack Web API (Bearer token or `token` field)
    GET      /link/?ticket=…            Socket Mode WebSocket (URL from apps.connections.open)
    POST     /actions/{token}           response_url of a block_actions payload
    GET      /admin/{channels,messages,pins,reactions,deliveries,calls,connections,ephemeral}
    GET|PUT  /admin/faults              fault injection (JSON, see faults.Faults)
    PUT      /admin/rate-limits         {"scale": 0 | factor}
    POST     /admin/sockets/drop        cut every Socket Mode connection
    POST     /admin/sockets/disconnect  send `disconnect` (reason=refresh_requested|…)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from troupe.errors import LocalSlackError
from troupe.localslack.api import Reply, WebApi, respond
from troupe.localslack.delivery import DeliveryLog, HttpSender, Publisher, SocketHub, Timing
from troupe.localslack.faults import Faults
from troupe.localslack.ratelimit import RateLimiter
from troupe.localslack.store import JSON, Store
from troupe.localslack.webchat import WebChat
from troupe.localslack.workspace import Workspace

log = logging.getLogger(__name__)
AUTOSAVE_SECONDS = 2.0


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8310
    state_path: Path | None = None
    rate_limit_scale: float = 1.0
    timing: Timing = field(default_factory=Timing)
    faults: Faults = field(default_factory=Faults)
    seed: int | None = None  # for reproducible fault injection


class LocalSlack:
    """One workspace served over HTTP. Runs on the caller's event loop."""

    def __init__(self, workspace: Workspace, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.store = Store(workspace, time.time)
        self.log = DeliveryLog()
        self.hub = SocketHub(self.settings.timing, self.log)
        self.http = HttpSender(self.settings.timing, self.log)
        self.publisher = Publisher(workspace, self.hub, self.http)
        self.api = WebApi(
            self.store,
            self.publisher,
            self.hub,
            RateLimiter(self.settings.rate_limit_scale),
            self.settings.faults,
            random.Random(self.settings.seed),
        )
        self._runner: web.AppRunner | None = None
        self._autosave: asyncio.Task[None] | None = None
        self._saved_calls = -1

    @property
    def url(self) -> str:
        return self.api.origin

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._load_state()
        self.save_state()  # fail now, not at the first autosave, if the path is not writable
        self._runner = web.AppRunner(self.web_app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            where = f"{self.settings.host}:{self.settings.port}"
            raise LocalSlackError(f"cannot listen on {where}: {exc.strerror}") from exc
        host, port = _bound_address(self._runner)
        self.api.origin = f"http://{host}:{port}"
        if self.settings.state_path is not None:
            self._autosave = asyncio.create_task(self._autosave_loop())

    async def stop(self) -> None:
        if self._autosave is not None:
            self._autosave.cancel()
        try:
            self.save_state()
        finally:
            await self.hub.disconnect_all("link_disabled")
            self.hub.drop_all()  # clients would keep the sockets open while reconnecting
            await self.http.close()
            if self._runner is not None:
                await self._runner.cleanup()

    def _load_state(self) -> None:
        path = self.settings.state_path
        if path is None or not path.exists():
            return
        try:
            self.store.restore(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise LocalSlackError(f"cannot read state file {path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalSlackError(f"{path}: not a localslack state file ({exc})") from exc

    def save_state(self) -> None:
        """Write the state file atomically (a crash mid-write leaves the previous one)."""
        path = self.settings.state_path
        if path is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.store.snapshot()), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            raise LocalSlackError(f"cannot write state file {path}: {exc.strerror}") from exc
        self._saved_calls = self.api.calls.total()

    async def _autosave_loop(self) -> None:
        while True:
            await asyncio.sleep(AUTOSAVE_SECONDS)
            if self.api.calls.total() != self._saved_calls:
                try:
                    self.save_state()
                except LocalSlackError as exc:
                    log.warning("%s (will retry)", exc)

    # ---- routes --------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[_never_a_traceback], client_max_size=8 * 2**20)
        app.router.add_route("*", "/api/{method}", self._web_api)
        app.router.add_get("/link/", self.hub.handle)
        app.router.add_post("/actions/{token}", self._response_url)
        WebChat(self).register(app)
        admin = Admin(self)
        for name in ("channels", "messages", "pins", "reactions", "deliveries", "calls"):
            app.router.add_get(f"/admin/{name}", _json_view(getattr(admin, name)))
        app.router.add_get("/admin/connections", _json_view(admin.connections))
        app.router.add_get("/admin/ephemeral", _json_view(admin.ephemeral))
        app.router.add_get("/admin/faults", _json_view(admin.get_faults))
        app.router.add_put("/admin/faults", admin.put_faults)
        app.router.add_put("/admin/rate-limits", admin.put_rate_limits)
        app.router.add_post("/admin/sockets/drop", admin.drop_sockets)
        app.router.add_post("/admin/sockets/disconnect", admin.disconnect_sockets)
        return app

    async def _web_api(self, request: web.Request) -> web.Response:
        try:
            args = await _request_args(request)
        except _BadBody as exc:
            return web.json_response({"ok": False, "error": exc.code})
        token = _bearer(request) or _optional_str(args.pop("token", None))
        reply = await self.api.call(request.match_info["method"], token, args)
        return _json(reply)

    async def _response_url(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_json"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"ok": False, "error": "json_not_object"}, status=400)
        return _json(await respond(self.api, request.match_info["token"], body))


class _BadBody(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


async def _request_args(request: web.Request) -> dict[str, Any]:
    """Query string, then form / multipart / JSON body, as Slack accepts them all."""
    args: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise _BadBody("invalid_json") from exc
        if not isinstance(body, dict):
            raise _BadBody("json_not_object")
        return args | body
    form = await request.post()
    return args | {k: v for k, v in form.items() if isinstance(v, str)}


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _optional_str(value: Any) -> str | None:
    return str(value) if value else None


def _json(reply: Reply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


@web.middleware
async def _never_a_traceback(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"ok": False, "error": exc.reason.lower()}, status=exc.status)
    except Exception:
        log.exception("localslack: unexpected error serving %s", request.path)
        return web.json_response({"ok": False, "error": "fatal_error"}, status=500)


def _bound_address(runner: web.AppRunner) -> tuple[str, int]:
    server = runner.addresses[0]
    return str(server[0]), int(server[1])


def _json_view(
    fn: Callable[[web.Request], Any],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(request: web.Request) -> web.Response:
        return web.json_response(fn(request))

    return view


class Admin:
    """Inspection and fault injection for tests and people (not a Slack API)."""

    def __init__(self, server: LocalSlack) -> None:
        self.server = server
        self.store = server.store

    def _states(self, request: web.Request) -> list[Any]:
        wanted = request.query.get("channel")
        return [s for s in self.store.channels.values() if wanted in (None, s.info.id)]

    def channels(self, request: web.Request) -> list[JSON]:
        return [
            {
                "id": s.info.id,
                "name": s.info.name,
                "members": sorted(s.members),
                "messages": len(s.messages),
                "pins": len(s.pins),
            }
            for s in self._states(request)
        ]

    def messages(self, request: web.Request) -> list[JSON]:
        """Every message and reply, oldest first (optionally one thread: ?thread_ts=)."""
        thread = request.query.get("thread_ts")
        out = []
        for s in self._states(request):
            for m in s.messages.values():
                if thread is None or thread in (m.ts, m.thread_ts):
                    out.append({"channel": s.info.id, **self.store.render(s, m)})
        return out

    def pins(self, request: web.Request) -> list[JSON]:
        return [
            {"channel": s.info.id, "ts": ts, "created": p.created, "created_by": p.created_by}
            for s in self._states(request)
            for ts, p in s.pins.items()
        ]

    def reactions(self, request: web.Request) -> list[JSON]:
        return [
            {"channel": s.info.id, "ts": m.ts, "name": name, "users": users}
            for s in self._states(request)
            for m in s.messages.values()
            for name, users in m.reactions.items()
        ]

    def deliveries(self, request: web.Request) -> list[JSON]:
        return self.server.log.list(request.query.get("app_id"))

    def calls(self, request: web.Request) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (method, outcome), n in sorted(self.server.api.calls.items()):
            out.setdefault(method, {})[outcome] = n
        return out

    def connections(self, request: web.Request) -> dict[str, int]:
        return {a.id: self.server.hub.connected(a.id) for a in self.store.workspace.apps}

    def ephemeral(self, request: web.Request) -> list[JSON]:
        return self.server.api.ephemeral

    def get_faults(self, request: web.Request) -> JSON:
        return self.server.api.faults.model_dump()

    async def put_faults(self, request: web.Request) -> web.Response:
        try:
            faults = Faults.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        self.server.api.faults = faults
        return web.json_response({"ok": True, "faults": faults.model_dump()})

    async def put_rate_limits(self, request: web.Request) -> web.Response:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            scale = float((await request.json())["scale"])
            if scale >= 0:
                self.server.api.limiter = RateLimiter(scale)
                return web.json_response({"ok": True, "scale": scale})
        return web.json_response(
            {"ok": False, "error": 'expected {"scale": number >= 0}'}, status=400
        )

    async def drop_sockets(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "dropped": self.server.hub.drop_all()})

    async def disconnect_sockets(self, request: web.Request) -> web.Response:
        reason = request.query.get("reason", "refresh_requested")
        return web.json_response({"ok": True, "sent": await self.server.hub.disconnect_all(reason)})


class ThreadedLocalSlack:
    """LocalSlack on its own event loop in a background thread (tests, benchmarks, sandbox)."""

    def __init__(self, workspace: Workspace, settings: Settings | None = None) -> None:
        self.server = LocalSlack(workspace, settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_url(self) -> str:
        return self.server.url + "/api/"

    def start(self) -> ThreadedLocalSlack:
        self._thread.start()
        self.run(self.server.start())
        return self

    def stop(self) -> None:
        self.run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def run(self, coro: Awaitable[Any], timeout: float = 10) -> Any:
        """Run `coro` on the server's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(_as_coro(coro), self._loop)
        return future.result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a plain function on the server's loop (the store is not thread-safe)."""

        async def wrapper() -> Any:
            return fn()

        return self.run(wrapper())


async def _as_coro(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
