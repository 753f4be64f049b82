"""The web page at ``/``: plain HTML, CSS and a script from the package itself (no build, no CDN).

Also the service's icon (``/favicon.ico``: browsers and bookmark tools ask for it whether or not a
page names it) and a ReDoc page (``/redoc``) whose script asks nothing of another site.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)

# ReDoc's bundle (as fastapi_offline ships it) draws Redocly's logo from this address in its side
# menu, whatever the options. An empty data: image fails to load, and ReDoc's own onError handler
# then leaves the logo out: the "API docs by Redocly" link stays, no request leaves the service.
REDOC_BUNDLE = Path(fastapi_offline.__file__).resolve().parent / "static" / "redoc.standalone.js"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_SCRIPT_PATH = "/redoc/redoc.standalone.js"


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    # static/favicon.ico: a magnifying glass on the page's blue, 16/32/48 px, drawn with Pillow.
    return FileResponse(
        STATIC_DIR / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}
    )


@cache
def _redoc_bundle_without_cdn_logo() -> bytes:
    return REDOC_BUNDLE.read_text(encoding="utf-8").replace(REDOC_CDN_LOGO, "data:,").encode("utf-8")


@router.get(REDOC_SCRIPT_PATH)
async def redoc_script() -> Response:
    return Response(
        _redoc_bundle_without_cdn_logo(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc with the script above, no Google fonts and the service's icon. It answers only when the
    app leaves ``/redoc`` free (``FastAPIOffline(redoc_url=None)``): the first route for a path wins."""
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{REDOC_SCRIPT_PATH}",
        redoc_favicon_url=f"{root}/favicon.ico",
        with_google_fonts=False,
    )
