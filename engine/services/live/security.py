"""Who may read the dashboard and who may change things through it.

* Bind: loopback by default; any other address needs a token (from the environment).
* Reading: with no token configured (loopback only) the ``Host`` header must name a loopback
  host (DNS rebinding cannot reach the API); with a token, every request needs
  ``Authorization: Bearer <token>`` or the session cookie a login sets (a random id, never
  the token). Tokens are compared with :func:`hmac.compare_digest`.
* Changing (approve, deny, pause, resume, stop): refused when ``Origin`` is another origin or
  ``Sec-Fetch-Site`` is not same-origin, and unless the request proves it comes from the page:
  the ``X-MC-CSRF`` header must equal the ``mc_live_csrf`` cookie (``SameSite=Strict``, set with
  the page; another site can neither read it nor set the header). A bearer token is proof too
  (a browser never attaches it on its own).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

from engine.services.net import is_loopback

CSRF_COOKIE = "mc_live_csrf"
CSRF_HEADER = "x-mc-csrf"
SESSION_COOKIE = "mc_live_session"
SESSIONS_MAX = 1000
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Guard:
    """The checks of one running dashboard (``token``: ``None`` when loopback-only)."""

    token: str | None
    sessions: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ reading
    def host_ok(self, request: Request) -> bool:
        if self.token is not None:
            return True
        host = request.headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        return is_loopback(name)

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None or not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def session_ok(self, request: Request) -> bool:
        presented = request.cookies.get(SESSION_COOKIE, "")
        return bool(presented) and any(
            hmac.compare_digest(presented.encode(), s.encode()) for s in self.sessions)

    def may_read(self, request: Request) -> bool:
        if not self.host_ok(request):
            return False
        if self.token is None:
            return True
        return self.bearer_ok(request) or self.session_ok(request)

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        self.sessions.append(session)
        del self.sessions[:-SESSIONS_MAX]
        return session

    # ------------------------------------------------------------------ changing
    @staticmethod
    def same_origin(request: Request) -> bool:
        """``Origin`` (when sent) names this server; ``Sec-Fetch-Site`` (when sent) agrees."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        host = request.headers.get("host", "")
        return origin in (f"{request.url.scheme}://{host}",)

    def may_change(self, request: Request) -> tuple[bool, str]:
        """(allowed, reason) for a state-changing request that passed :meth:`may_read`."""
        if not self.same_origin(request):
            return False, "cross-site request refused"
        if self.bearer_ok(request):
            return True, ""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        header = request.headers.get(CSRF_HEADER, "")
        if cookie and header and hmac.compare_digest(cookie.encode(), header.encode()):
            return True, ""
        return False, "missing or wrong CSRF proof (X-MC-CSRF header must match the mc_live_csrf cookie)"
