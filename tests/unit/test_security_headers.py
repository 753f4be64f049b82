"""preprocess_service.security_headers.SecurityHeaders: the headers every answer carries.

The page's policy is what stops clickjacking of "Sign the file" (frame-ancestors 'none') and any
script but the service's own; the docs pages alone may run inline script. Checked around a tiny
Starlette app through httpx's ASGI transport: no server, the middleware exactly as it wraps the app.
"""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from preprocess_service.security_headers import DOCS_POLICY, PAGE_POLICY, SecurityHeaders


async def page(request: Request) -> Response:
    return PlainTextResponse("<html>page</html>", media_type="text/html")


async def docs(request: Request) -> Response:
    return PlainTextResponse("<script>SwaggerUI()</script>", media_type="text/html")


async def missing(request: Request) -> Response:
    return JSONResponse({"error": {"code": "not_found"}}, status_code=404)


async def framed(request: Request) -> Response:
    return PlainTextResponse("x", headers={"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "sandbox"})


APP = SecurityHeaders(
    Starlette(
        routes=[
            Route("/", page),
            Route("/docs", docs),
            Route("/redoc", docs),
            Route("/analyses/x", missing),
            Route("/framed", framed),
        ]
    )
)


def get(path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://testserver") as client:
            return await client.get(path)

    return asyncio.run(call())


def directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


def test_the_page_policy_forbids_framing_and_foreign_or_inline_script() -> None:
    response = get("/")
    assert response.status_code == 200 and response.text == "<html>page</html>"  # the body passes untouched
    policy = directives(response.headers["content-security-policy"])
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert policy["script-src"] == "script-src 'self'"
    assert policy["object-src"] == "object-src 'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]


def test_the_docs_pages_alone_allow_inline_script_and_still_forbid_framing() -> None:
    for path in ("/docs", "/redoc"):
        response = get(path)
        assert response.headers["content-security-policy"] == DOCS_POLICY
        policy = directives(DOCS_POLICY)
        assert policy["script-src"] == "script-src 'self' 'unsafe-inline'"
        assert policy["frame-ancestors"] == "frame-ancestors 'none'"


def test_the_common_headers_are_on_every_answer() -> None:
    for path in ("/", "/docs"):
        headers = get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cross-origin-opener-policy"] == "same-origin"


def test_error_answers_carry_them_too() -> None:
    for path in ("/analyses/x", "/no/such/route"):
        response = get(path)
        assert response.status_code == 404
        assert response.headers["content-security-policy"] == PAGE_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_header_the_app_set_is_kept_and_not_duplicated() -> None:
    headers = get("/framed").headers
    assert headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert headers.get_list("content-security-policy") == ["sandbox"]
    assert headers.get_list("x-content-type-options") == ["nosniff"]  # the others are still added


def test_no_security_header_appears_twice() -> None:
    raw = [name.lower() for name, _ in get("/").headers.raw]
    for name in (b"content-security-policy", b"x-frame-options", b"x-content-type-options", b"referrer-policy"):
        assert raw.count(name) == 1


def test_lifespan_and_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope, receive, send) -> None:
        seen.append(scope["type"])

    async def receive() -> dict:
        return {}

    async def send(message) -> None:
        raise AssertionError("nothing should be sent")

    asyncio.run(SecurityHeaders(inner)({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"]


def test_an_unexpected_error_answers_500_with_the_headers_too(tmp_path):
    """Starlette runs the handler of unexpected errors outside every middleware: without headers_for
    the one answer that most needs care (a 500) went out with no CSP, nosniff or framing rule."""
    from starlette.testclient import TestClient

    from preprocess_service.app import create_app
    from preprocess_service.settings import Settings
    from testing.fake_backend import FakeBackend

    async def boom() -> None:
        raise RuntimeError("a bug")

    app = create_app(Settings(keys_dir=tmp_path / "keys", history=False), backend=FakeBackend())
    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert response.headers["content-security-policy"] == PAGE_POLICY
    assert response.headers["x-content-type-options"] == "nosniff" and response.headers["x-frame-options"] == "DENY"
