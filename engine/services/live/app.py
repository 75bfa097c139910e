"""The FastAPI app of ``mc live``: the page, its Server-Sent Events and its few actions.

Routes (``{project}``: a registered project's name):

* ``GET /`` the page; ``GET /static/*`` its script and style (no data, no secret).
* ``GET /api/projects`` names, last mission and status of every project.
* ``GET /api/projects/{project}/snapshot?mission=ID`` the page's state as JSON.
* ``GET /api/projects/{project}/stream?mission=ID`` SSE: ``snapshot`` first, then ``update``
  events (JSON) as the mission's events arrive; ``mission`` omitted follows the newest one.
* ``POST /api/projects/{project}/approvals/{id}/approve`` (or ``deny``): decides the pending
  approvals row, ``decided_by = "web"``; 409 when it was decided already.
* ``POST /api/projects/{project}/missions/{id}/pause`` (``resume``, ``stop``): a row in the
  store's commands table, which the running engine obeys.
* ``GET|POST /login`` the token form (only when a token is configured).

Every request passes :class:`~engine.services.live.security.Guard`; POSTs also its
cross-site checks.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse

from engine.registry import mission_state
from engine.resilience.liveness import LOST, newest_is_lost
from engine.services.live.hub import ProjectHub
from engine.services.live.projects import LiveProject, ProjectSource
from engine.services.live.security import CSRF_COOKIE, SESSION_COOKIE, Guard
from engine.store import StoreError

STATIC = Path(__file__).resolve().parent / "static"
ACTIVE = {"pending", "running", "paused"}
COMMANDS = ("pause", "resume", "stop")
PING_S = 15
LOGIN_BODY_MAX = 4096


def create_app(source: ProjectSource, *, token: str | None = None) -> FastAPI:
    """The app serving ``source``'s projects; ``token`` (from the environment) or loopback-only."""
    guard = Guard(token=token)
    hubs: dict[Path, ProjectHub] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for hub in hubs.values():
            hub.close()

    app = FastAPI(title="mc live", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.guard = guard
    app.state.hubs = hubs

    def hub_of(project: LiveProject) -> ProjectHub:
        hub = hubs.get(project.store_path)
        if hub is None:
            hub = hubs[project.store_path] = ProjectHub(project.name, project.store_path)
        return hub

    def project_of(name: str) -> LiveProject:
        project = source.get(name)
        if project is None:
            raise HTTPException(404, f"unknown project {name!r}")
        return project

    def read_access(request: Request) -> None:
        if not guard.host_ok(request):
            raise HTTPException(403, "this dashboard only answers to a loopback host name")
        if not guard.may_read(request):
            raise HTTPException(401, "a token is required: log in at /login or send "
                                     "'Authorization: Bearer <token>'")

    def change_access(request: Request) -> None:
        read_access(request)
        allowed, reason = guard.may_change(request)
        if not allowed:
            raise HTTPException(403, reason)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401 and request.method == "GET" and request.url.path == "/":
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'")
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------ pages
    @app.get("/", dependencies=[Depends(read_access)])
    async def index(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html", media_type="text/html")
        response.headers["Cache-Control"] = "no-store"
        if not request.cookies.get(CSRF_COOKIE):
            response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), httponly=False,
                                samesite="strict", path="/")
        return response

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        if not guard.host_ok(request):
            raise HTTPException(403, "this dashboard only answers to a loopback host name")
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        if not guard.host_ok(request):
            raise HTTPException(403, "this dashboard only answers to a loopback host name")
        if guard.token is None:
            return RedirectResponse("/", status_code=303)
        return FileResponse(STATIC / "login.html", media_type="text/html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        if guard.token is None:
            return RedirectResponse("/", status_code=303)
        if not guard.same_origin(request):
            raise HTTPException(403, "cross-site request refused")
        body = await request.body()
        if len(body) > LOGIN_BODY_MAX:
            raise HTTPException(413, "login form too large")
        token = parse_qs(body.decode(errors="replace")).get("token", [""])[0]
        if not guard.token_ok(token):
            raise HTTPException(401, "wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, guard.new_session(), httponly=True,
                            samesite="strict", path="/", secure=request.url.scheme == "https")
        return response

    # ------------------------------------------------------------------ reading
    @app.get("/api/projects", dependencies=[Depends(read_access)])
    async def projects() -> list[dict[str, Any]]:
        out = []
        for project in source.projects():
            mission_id, status, changed = mission_state(project.store_path)
            lost = newest_is_lost(project.store_path, time.time())
            out.append({"name": project.name, "last_mission_id": mission_id,
                        "last_status": LOST if lost else status, "updated_at": changed,
                        "lost": lost})
        return out

    @app.get("/api/projects/{name}/snapshot", dependencies=[Depends(read_access)])
    async def project_snapshot(name: str, mission: int | None = None) -> Response:
        hub = hub_of(project_of(name))
        sub, snap = hub.subscribe(mission)
        hub.unsubscribe(sub)
        return Response(snap, media_type="application/json")

    @app.get("/api/projects/{name}/stream", dependencies=[Depends(read_access)])
    async def stream(name: str, request: Request, mission: int | None = None) -> Response:
        hub = hub_of(project_of(name))

        async def events() -> AsyncIterator[dict[str, str]]:
            sub, snap = hub.subscribe(mission)
            try:
                yield {"event": "snapshot", "data": snap}
                while True:
                    kind, data = await sub.queue.get()
                    if kind == "resync":
                        sub.resync = False
                        yield {"event": "snapshot", "data": hub.snapshot_json(sub)}
                    else:
                        yield {"event": kind, "data": data}
            finally:
                hub.unsubscribe(sub)

        return EventSourceResponse(events(), ping=PING_S, headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ changing
    def open_store(project: LiveProject) -> Any:
        store = hub_of(project).open()
        if store is None:
            raise HTTPException(404, f"project {project.name!r} has no mission store yet")
        return store

    @app.post("/api/projects/{name}/approvals/{approval_id}/{decision}",
              dependencies=[Depends(change_access)])
    async def decide(name: str, approval_id: int, decision: str) -> dict[str, Any]:
        if decision not in ("approve", "deny"):
            raise HTTPException(404, f"unknown decision {decision!r} (approve or deny)")
        store = open_store(project_of(name))
        row = store.get("approvals", approval_id)
        if row is None:
            raise HTTPException(404, f"approval {approval_id} does not exist")
        try:  # in a thread: a write may wait for the engine's write lock
            decided = await anyio.to_thread.run_sync(
                lambda: store.decide_approval(approval_id, decision == "approve", by="web"))
        except StoreError as exc:
            raise HTTPException(409, str(exc)) from None
        if not decided:
            raise HTTPException(409, f"approval {approval_id} was already decided: {row['status']}")
        return {"id": approval_id, "status": "approved" if decision == "approve" else "denied",
                "decided_by": "web"}

    @app.post("/api/projects/{name}/missions/{mission_id}/{command}",
              dependencies=[Depends(change_access)])
    async def command(name: str, mission_id: int, command: str) -> dict[str, Any]:
        if command not in COMMANDS:
            raise HTTPException(404, f"unknown command {command!r} ({', '.join(COMMANDS)})")
        store = open_store(project_of(name))
        mission = store.get("missions", mission_id)
        if mission is None:
            raise HTTPException(404, f"mission {mission_id} does not exist")
        if mission["status"] not in ACTIVE:
            raise HTTPException(409, f"mission {mission_id} is {mission['status']}")
        command_id = await anyio.to_thread.run_sync(lambda: store.send_command(mission_id, command))
        return {"mission_id": mission_id, "command": command, "id": command_id}

    return app
