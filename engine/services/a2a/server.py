"""The A2A server app: agent card, JSON-RPC endpoint (with streaming), bearer-token check.

Built from the SDK's own pieces: ``create_agent_card_routes`` (the card at
``/.well-known/agent-card.json``), ``create_jsonrpc_routes`` + ``DefaultRequestHandler`` +
``InMemoryTaskStore`` (tasks; their missions are linked in :class:`TaskMap`, so a restarted
server still answers for them: :mod:`engine.services.a2a.restore`), served by uvicorn. Security: loopback by default; any other bind address is refused unless a bearer
token is configured (from the environment variable ``[a2a] token_env``); with a token, the card
declares the bearer scheme and every other request must carry it (``hmac.compare_digest``).
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from starlette.applications import Starlette

from engine import __version__
from engine.services.a2a.executor import MISSION_STATUS, RUN_MISSION, MissionExecutor
from engine.services.a2a.projects import Projects
from engine.services.a2a.restore import MissionRequestHandler, RestoringTaskStore
from engine.services.a2a.tasks import TaskMap
from engine.services.net import ASGIApp, BindRefused, Receive, Scope, Send, is_loopback

RPC_PATH = "/a2a"
BEARER = "bearer"

def check_bind(host: str, token: str | None, token_env: str) -> None:
    """Refuse (``BindRefused``) to listen beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise BindRefused(
            f"a2a.host = {host!r} is not a loopback address: set a bearer token in the "
            f"environment variable {token_env} (named by a2a.token_env) to serve beyond this "
            "machine, or bind 127.0.0.1")


@dataclass(frozen=True)
class ServerSettings:
    """Where the server listens and who may call it (``token`` None: loopback only)."""

    host: str
    port: int
    token: str | None = None
    token_env: str = "MC_A2A_TOKEN"
    public_url: str | None = None

    @property
    def url(self) -> str:
        """The base URL the card announces: ``public_url`` (e.g. behind a TLS proxy), else
        ``http://host:port``."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def agent_card(settings: ServerSettings, projects: Projects) -> AgentCard:
    """The public card: name, description, version, the JSON-RPC interface, streaming, the
    two skills, and (with a token) the HTTP bearer security scheme it requires."""
    card = AgentCard(
        name="Mission Control",
        description=(
            "Runs missions of AI coding agents against a git repository (plan, parallel "
            "agents in worktrees, review, merge queue, verification) and reports on them. "
            "A run-mission task follows its mission to the end; cancel stops it."),
        version=__version__,
        supported_interfaces=[AgentInterface(
            url=settings.url + RPC_PATH, protocol_binding=TransportProtocol.JSONRPC.value,
            protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id=RUN_MISSION, name="run a mission",
                description=(
                    "Start a mission with an objective on a registered project. Input: the "
                    "objective as text, or a data part {\"skill\": \"run-mission\", "
                    "\"project\": <name>, \"objective\": <text>}. The task streams epochs, "
                    "merged and failed units, approvals (input-required: reply approve or "
                    "deny) and ends with the mission."),
                tags=["coding", "mission", "git"],
                examples=["Add input validation to the CLI and cover it with tests"],
                input_modes=["text/plain", "application/json"],
                output_modes=["text/plain", "application/json"]),
            AgentSkill(
                id=MISSION_STATUS, name="mission status",
                description=(
                    "Status of a project's mission (default: its latest): status, epoch, "
                    "spend, units by status, pending approvals. Input: text \"status "
                    "[project] [mission id]\" or a data part {\"skill\": \"mission-status\", "
                    "\"project\": <name>, \"mission_id\": <id>}."),
                tags=["status", "mission"],
                examples=["status", "status myproject 3"],
                input_modes=["text/plain", "application/json"],
                output_modes=["text/plain", "application/json"]),
        ],
    )
    if settings.token:
        card.security_schemes[BEARER].CopyFrom(SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="Bearer", description=f"the token in ${settings.token_env}")))
        card.security_requirements.append(
            SecurityRequirement(schemes={BEARER: StringList(list=[])}))
    return card


class BearerAuth:
    """ASGI middleware: every HTTP request but the public agent card must carry
    ``Authorization: Bearer <token>`` (compared with ``hmac.compare_digest``); else 401."""

    def __init__(self, app: ASGIApp, token: str, public_paths: tuple[str, ...]) -> None:
        self.app = app
        self._token = token.encode()
        self._public = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._public:
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                header = value
                break
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self._token):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "unauthorized: send Authorization: Bearer <token>"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="mc-a2a"'),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def build_app(settings: ServerSettings, projects: Projects, tasks: TaskMap, *,
              executor: MissionExecutor | None = None) -> Starlette:
    """The Starlette app (card + JSON-RPC), behind :class:`BearerAuth` when a token is set."""
    card = agent_card(settings, projects)
    executor = executor or MissionExecutor(projects, tasks, drop_env=(settings.token_env,))
    handler = MissionRequestHandler(
        agent_executor=executor, task_store=RestoringTaskStore(executor), agent_card=card)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await handler.aclose()

    app = Starlette(routes=[*create_agent_card_routes(card),
                            *create_jsonrpc_routes(handler, rpc_url=RPC_PATH)],
                    lifespan=lifespan)
    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token,
                           public_paths=(AGENT_CARD_WELL_KNOWN_PATH,))
    return app


def serve(settings: ServerSettings, projects: Projects, tasks: TaskMap) -> None:
    """Run the server in the foreground until interrupted (refuses an unsafe bind first)."""
    import uvicorn

    check_bind(settings.host, settings.token, settings.token_env)
    uvicorn.run(build_app(settings, projects, tasks), host=settings.host, port=settings.port,
                log_level="warning")
