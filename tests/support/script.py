"""What the scripted model server answers: replies, rules, faults (dialect-neutral).

A :class:`Rule` matches a :class:`ModelRequest` (the normalised view of one request of any
dialect) and yields a :class:`Reply` (content blocks + stop reason), optionally with a
:class:`Fault`. Helpers make scripts short::

    rules = [
        Rule(match=r"You are a worker agent", reply=turns([
            tool_use("Read", {"file_path": "app.py"}),
            tool_use("Write", {"file_path": "app.py", "content": "x = 1\\n"}),
            tool_use("Bash", {"command": "python -m unittest -q"}),
            text("done\\n<mc-result>{...}</mc-result>"),
        ])),
        Rule(match=r"You are the code reviewer", reply=text('```json\\n{...}\\n```')),
    ]

``turns([...])`` picks its step from the request itself: the number of tool-result turns
already in the conversation (``ModelRequest.tool_turns``), so concurrent sessions need no
shared state. After the last step it repeats the last one.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """A unique id such as ``toolu_ms000001`` (process-wide counter)."""
    return f"{prefix}_ms{next(_ids):06d}"


# --------------------------------------------------------------------------- content blocks
@dataclass
class Text:
    text: str


@dataclass
class ToolUse:
    """A tool call; ``input`` is the arguments object, or the raw text of a custom
    (freeform) tool such as codex's ``apply_patch``."""

    name: str
    input: dict[str, Any] | str
    id: str | None = None  # filled in when rendered if None


@dataclass
class Thinking:
    thinking: str
    signature: str = "c2lnbmF0dXJl"  # any base64 string; the server never checks it


Block = Text | ToolUse | Thinking


@dataclass
class Usage:
    """Token counts reported for a reply; ``None`` fields are estimated (4 chars a token)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass
class Reply:
    """One model turn: content blocks and why it stopped.

    ``stop_reason`` defaults to ``tool_use`` when a block is a tool call, else ``end_turn``;
    set ``max_tokens`` or ``refusal`` to script those endings.
    """

    blocks: list[Block]
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None  # the model named in the reply; default: the requested one

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if any(isinstance(b, ToolUse) for b in self.blocks) else "end_turn"

    def text(self) -> str:
        return "".join(b.text for b in self.blocks if isinstance(b, Text))


# --------------------------------------------------------------------------- faults
@dataclass
class Fault:
    """A failure to inject instead of (or while) answering.

    kind: ``http`` (status with an error body; ``retry_after`` seconds sets the header),
    ``cut`` (stream ``after_events`` SSE events then drop the connection; non-streaming
    requests get the headers and half a body), ``slow`` (``delay`` seconds before each
    event), ``hang`` (never answer until the server stops), ``stream_error`` (an SSE
    ``error`` event after ``after_events`` events, e.g. overloaded mid-stream; a
    non-streaming request gets the same status as an HTTP error instead).
    """

    kind: str
    status: int = 500
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    after_events: int = 3
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers


def http_error(status: int, *, retry_after: float | None = None,
               error_type: str | None = None, message: str | None = None,
               headers: dict[str, str] | None = None) -> Fault:
    """An HTTP error answer with the dialect's error body (and extra ``headers``)."""
    return Fault("http", status=status, retry_after=retry_after, error_type=error_type,
                 message=message, headers=dict(headers or {}))


def usage_limit_reached(reset_in: float = 3600) -> Fault:
    """A subscription usage limit: HTTP 429 with ``anthropic-ratelimit-unified-status:
    rejected`` and its reset time (what Claude Code reports as "You've hit your limit")."""
    reset = int(time.time() + reset_in)
    return http_error(429, retry_after=reset_in, headers={
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": str(reset),
        "anthropic-ratelimit-unified-5h-status": "rejected",
        "anthropic-ratelimit-unified-5h-reset": str(reset),
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
    })


def rate_limited(retry_after: float | None = 1) -> Fault:
    """HTTP 429 with ``retry-after`` (seconds)."""
    return http_error(429, retry_after=retry_after)


def overloaded() -> Fault:
    """HTTP 529 ``overloaded_error`` (Anthropic's shape)."""
    return http_error(529)


def server_error() -> Fault:
    """HTTP 500 ``api_error``."""
    return http_error(500)


def auth_error() -> Fault:
    """HTTP 401 ``authentication_error`` (invalid x-api-key)."""
    return http_error(401)


def cut_stream(after_events: int = 3) -> Fault:
    """Send ``after_events`` SSE events, then close the connection mid-message."""
    return Fault("cut", after_events=after_events)


def slow_stream(delay: float) -> Fault:
    """Sleep ``delay`` seconds before each SSE event (the reply is still complete)."""
    return Fault("slow", delay=delay)


def hang() -> Fault:
    """Never answer (the handler waits until the server stops)."""
    return Fault("hang")


def stream_error(after_events: int = 3, status: int = 529) -> Fault:
    """An SSE ``error`` event (overloaded by default) after ``after_events`` events."""
    return Fault("stream_error", status=status, after_events=after_events)


# --------------------------------------------------------------------------- requests
@dataclass
class ModelRequest:
    """The dialect-neutral view of a model request that rules match on.

    ``prompt_text``: the system prompt and every user *text* (not tool results), joined by
    newlines. ``last_text``: the text of the last user message. ``tool_turns``: how many
    user/tool messages carry tool results. ``last_is_tool_result``: the last message does.
    ``tool_results``: the tool results' texts in order (``(tool name or id, text, is_error)``).
    ``assistant_turns``: how many assistant messages the conversation holds (a position for
    CLIs without tool calls, such as aider: ``turns(steps, by="assistant_turns")``).
    """

    dialect: str
    path: str
    model: str
    stream: bool
    system: str
    prompt_text: str
    last_text: str
    tool_turns: int
    last_is_tool_result: bool
    tools: list[str]
    tool_results: list[tuple[str, str, bool]]
    body: Any
    assistant_turns: int = 0


Responder = Callable[[ModelRequest], "Reply | None"]


@dataclass
class Turns:
    """A scripted sequence of replies across the turns of one conversation."""

    steps: Sequence[Reply | Responder]
    by: str = "tool_turns"  # or "assistant_turns"

    def __call__(self, request: ModelRequest) -> Reply | None:
        if not self.steps:
            return None
        position = getattr(request, self.by)
        step = self.steps[min(position, len(self.steps) - 1)]
        return step(request) if callable(step) else step


def text(content: str, *, stop_reason: str | None = None, usage: Usage | None = None) -> Reply:
    """A reply of one text block."""
    return Reply([Text(content)], stop_reason=stop_reason, usage=usage or Usage())


def tool_use(name: str, tool_input: dict[str, Any], *, say: str | None = None,
             id: str | None = None) -> Reply:
    """A reply calling one tool (optionally with a short text before it)."""
    blocks: list[Block] = [Text(say)] if say else []
    blocks.append(ToolUse(name, dict(tool_input), id))
    return Reply(blocks)


def custom_tool(name: str, raw_input: str, *, id: str | None = None) -> Reply:
    """A reply calling a freeform tool with raw text input (codex: ``apply_patch``)."""
    return Reply([ToolUse(name, raw_input, id)])


def thinking(thought: str, then: Reply) -> Reply:
    """``then`` with a thinking block in front."""
    return Reply([Thinking(thought), *then.blocks], stop_reason=then.stop_reason,
                 usage=then.usage, model=then.model)


def reply(*blocks: Block, stop_reason: str | None = None, usage: Usage | None = None) -> Reply:
    """A reply of the given blocks."""
    return Reply(list(blocks), stop_reason=stop_reason, usage=usage or Usage())


def turns(steps: Sequence[Reply | Responder], *, by: str = "tool_turns") -> Turns:
    """Step ``i`` answers the request that already holds ``i`` tool-result turns
    (``by="assistant_turns"``: ``i`` assistant messages)."""
    if by not in ("tool_turns", "assistant_turns"):
        raise ValueError(f"turns(by=...) must be tool_turns or assistant_turns, not {by!r}")
    return Turns(list(steps), by)


def _pattern(value: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if value is None or isinstance(value, re.Pattern):
        return value
    return re.compile(value, re.S)


@dataclass
class Rule:
    """Matches a request and gives its reply and/or fault.

    All given conditions must hold: ``match`` (regex searched in ``prompt_text``), ``last``
    (regex in ``last_text``), ``model`` (regex searched in the model name), ``dialect``,
    ``tool_result`` (the last message holds tool results or not), ``when`` (any predicate).
    ``times`` limits how often it may match (then it is skipped). ``reply`` is a Reply, a
    :class:`Turns` or a callable returning a Reply (None falls through to the next rule).
    ``fault`` is applied with the reply (``http`` and ``hang`` need no reply).
    """

    reply: Reply | Responder | None = None
    match: str | re.Pattern[str] | None = None
    last: str | re.Pattern[str] | None = None
    model: str | re.Pattern[str] | None = None
    dialect: str | None = None
    tool_result: bool | None = None
    when: Callable[[ModelRequest], bool] | None = None
    fault: Fault | None = None
    times: int | None = None
    name: str = ""
    hits: int = 0

    def __post_init__(self) -> None:
        self.match = _pattern(self.match)
        self.last = _pattern(self.last)
        self.model = _pattern(self.model)

    def matches(self, request: ModelRequest) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.dialect and self.dialect != request.dialect:
            return False
        if self.match is not None and not self.match.search(request.prompt_text):  # type: ignore[union-attr]
            return False
        if self.last is not None and not self.last.search(request.last_text):  # type: ignore[union-attr]
            return False
        if self.model is not None and not self.model.search(request.model):  # type: ignore[union-attr]
            return False
        if self.tool_result is not None and self.tool_result != request.last_is_tool_result:
            return False
        return not (self.when is not None and not self.when(request))

    def resolve(self, request: ModelRequest) -> Reply | None:
        if self.reply is None:
            return None
        if isinstance(self.reply, Reply):
            return self.reply
        return self.reply(request)
