"""Why a Claude Code session failed: the failure classes of its result line, or of its absence.

:func:`classify_failure` names an API failure (auth, usage limit, overload, rate limit,
another API error) from the HTTP status, the text and the CLI's retry error code;
:func:`judge_result` and :func:`judge_no_result` turn what a :class:`ClaudeStreamParser`
saw into the :class:`AgentResult`'s status, ``failure_reason`` and ``error`` (line shapes:
``/work/shared/agent-protocols.md``, the real CLI's in ``docs/testing-real-clis.md``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from engine.agents.types import BUDGET, COMPLETED, ERROR, FAILED, AgentResult, FailureReason

if TYPE_CHECKING:
    from engine.agents.claude_stream import ClaudeStreamParser

_AUTH = re.compile(
    r"not logged in|invalid api key|please run /login|authentication|unauthori[sz]ed|"
    r"oauth token|invalid x-api-key|credit balance",
    re.I,
)
_USAGE_LIMIT = re.compile(r"hit your (?:[\w-]+ )?limit|usage limit|session limit|weekly limit",
                          re.I)  # "You've hit your 5-hour limit · resets 6:21am (UTC)" (2.1.332)
_OVERLOADED = re.compile(r"overloaded|\b529\b", re.I)
_RATE_LIMIT = re.compile(r"rate.?limit|\b429\b|too many requests", re.I)
# ``error`` codes of the synthetic assistant line that name the failure as classify_failure's
# ``retry_error`` does (``server_error``/``unknown`` say nothing more than the status).
FATAL_RETRY_ERRORS = frozenset({"authentication_failed", "billing_error"})
_CODE_REASONS = frozenset({"authentication_failed", "billing_error", "rate_limit", "overloaded"})
_INFRA_REASONS = frozenset(
    {FailureReason.AUTH, FailureReason.USAGE_LIMIT, FailureReason.OVERLOADED,
     FailureReason.RATE_LIMIT, FailureReason.API_ERROR}
)



def classify_failure(
    api_status: Any, text: str, *, retry_error: str | None = None, limit_rejected: bool = False
) -> FailureReason:
    """Auth, usage limit, overload, rate limit or another API error."""
    if api_status in (401, 403) or retry_error in ("authentication_failed", "billing_error"):
        return FailureReason.AUTH
    if _USAGE_LIMIT.search(text) or (limit_rejected and api_status in (429, None)):
        return FailureReason.USAGE_LIMIT
    if _AUTH.search(text):
        return FailureReason.AUTH
    if api_status == 529 or _OVERLOADED.search(text) or retry_error == "overloaded":
        return FailureReason.OVERLOADED
    if api_status == 429 or _RATE_LIMIT.search(text) or retry_error == "rate_limit":
        return FailureReason.RATE_LIMIT
    return FailureReason.API_ERROR



def judge_result(parser: ClaudeStreamParser, line: dict[str, Any], result: AgentResult) -> None:
    """Set ``result``'s status, failure reason and error from the session's result line."""
    subtype = line.get("subtype")
    is_error = bool(line.get("is_error"))
    api_status = line.get("api_error_status")
    errors = [str(e) for e in line.get("errors") or [] if e]
    text = str(line.get("result") or "")
    detail = "; ".join(errors) or text or parser.api_error_text or ""
    if subtype == "error_max_budget_usd":
        result.status, result.failure_reason = BUDGET, FailureReason.BUDGET
        result.error = detail or "session budget reached"
        return
    if subtype == "error_max_turns":
        result.status, result.failure_reason = FAILED, FailureReason.MAX_TURNS
        result.error = detail or "maximum number of turns reached"
        return
    if subtype == "success" and not is_error and api_status in (None, 0):
        result.status = COMPLETED
        return
    if line.get("stop_reason") == "refusal" or parser.refused:
        # a safety refusal, not an API failure: the session failed (it may be retried)
        result.status, result.failure_reason = FAILED, FailureReason.BAD_OUTPUT
        result.error = f"the model refused: {detail}" if detail else "the model refused"
        return
    if parser.api_error_code == "max_output_tokens":
        result.status, result.failure_reason = FAILED, FailureReason.BAD_OUTPUT
        result.error = detail or "the model's answer exceeded the output token limit"
        return
    if subtype == "error_max_structured_output_retries":
        result.status, result.failure_reason = FAILED, FailureReason.BAD_OUTPUT
        result.error = detail or "structured output retries exhausted"
        return
    reason = classify_failure(
        api_status, f"{detail} {parser.api_error_text or ''}",
        retry_error=parser.api_error_code if parser.api_error_code in _CODE_REASONS
        else parser.retry_error,
        limit_rejected=parser.limit_rejected,
    )
    result.failure_reason = reason
    result.status = ERROR if reason in _INFRA_REASONS else FAILED
    where = f" (HTTP {api_status})" if isinstance(api_status, int) else ""
    result.error = (detail or f"claude reported an error ({subtype})") + where

def judge_no_result(parser: ClaudeStreamParser, result: AgentResult, exit_code: int | None,
                    stderr: str) -> None:
    """Set ``result``'s status, failure reason and error when no result line came."""
    stderr_last = "\n".join(stderr.strip().splitlines()[-5:])
    if exit_code == 0:
        result.status, result.failure_reason = ERROR, FailureReason.BAD_OUTPUT
        result.error = "claude exited without a result line"
        return
    text = f"{stderr_last} {parser.api_error_text or ''}"
    if parser.retries and parser.retry_error in ("authentication_failed", "overloaded", "rate_limit"):
        result.failure_reason = classify_failure(
            parser.retry_status, text, retry_error=parser.retry_error,
            limit_rejected=parser.limit_rejected,
        )
    elif _AUTH.search(text) or _USAGE_LIMIT.search(text):
        result.failure_reason = classify_failure(None, text, limit_rejected=parser.limit_rejected)
    else:
        result.failure_reason = FailureReason.CRASH
    result.status = ERROR
    if parser.fatal_retry:
        status = f"HTTP {parser.retry_status}, " if parser.retry_status else ""
        result.error = (
            f"the API refused the credentials ({status}{parser.retry_error or 'auth'}): "
            "the session was ended at the CLI's first retry instead of after its backoff"
        )
        return
    result.error = (
        f"claude exited with code {exit_code} without a result"
        + (f": {stderr_last}" if stderr_last else "")
    )

