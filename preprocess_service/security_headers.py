"""Security headers on every answer, HTML and JSON alike (pure ASGI: bodies pass untouched).

The page at ``/`` loads only the service's own script and style, so its policy allows nothing
else: no inline script, no other origin, and no framing (``frame-ancestors 'none'``: "Sign the
file" cannot be clickjacked from another site). Video previews and the CSV download are ``blob:``
URLs the page makes itself. The interactive docs (``/docs``, ``/redoc``) start Swagger UI and ReDoc
from an inline script, so those two pages alone also allow inline script and style.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def headers_for(path: str) -> dict[str, str]:
    """The headers an answer to ``path`` carries; also used by the handler of unexpected errors,
    which Starlette runs outside every middleware (its 500 would otherwise go out without them)."""
    policy = DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGE_POLICY
    return {name.decode(): value.decode() for name, value in COMMON} | {"content-security-policy": policy}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = [(name.encode(), value.encode()) for name, value in headers_for(scope.get("path", "")).items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in added if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
