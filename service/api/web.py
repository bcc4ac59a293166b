"""The web page at ``/`` and the API docs at ``/docs`` and ``/redoc``, all served offline.

The page's files live in ``service/api/static/``; the docs' scripts and stylesheet come from the
pinned PyPI package ``fastapi-offline``, so no byte comes from a CDN. Every static file gets an
``ETag`` (a conditional request is answered 304) and a ``Cache-Control``. These routes sit
after the model routes, outside the API key, and ``/metrics`` does not count them.
"""

from __future__ import annotations

import mimetypes
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

# JavaScript modules must come as JavaScript, whatever the machine's mime table says
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("image/svg+xml", ".svg")

STATIC_DIR = Path(__file__).parent / "static"
DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))
FAVICON = "static/favicon.svg"
# the page's own files change with every release: the browser revalidates them (a 304 when
# unchanged); the docs' assets change only with the pinned package
PAGE_CACHE = "no-cache"
DOCS_CACHE = "public, max-age=86400"
# the docs may load nothing from elsewhere: ReDoc's sidebar links a logo on its makers' CDN,
# which the browser then refuses rather than fetches
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:"
)
# and the page only from the service, which its tests check too
PAGE_CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'"
# route templates that /metrics leaves out: they are the page, not model traffic
UNCOUNTED_ROUTES = frozenset(
    {"/", "/static/{path:path}", "/docs", "/docs/assets/{path:path}", "/redoc"}
)


class CachedStaticFiles(StaticFiles):
    """Starlette's static files (ETag, Last-Modified, 304) with a ``Cache-Control`` header."""

    def __init__(self, directory: Path, cache_control: str):
        super().__init__(directory=directory)
        self.cache_control = cache_control

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = self.cache_control
        return response


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _router(openapi_url: str, title: str) -> APIRouter:
    # plain routes rather than mounts, so that each request names its route template
    router = APIRouter(include_in_schema=False)
    page = CachedStaticFiles(STATIC_DIR, PAGE_CACHE)
    docs_assets = CachedStaticFiles(DOCS_ASSETS, DOCS_CACHE)

    @router.api_route("/", methods=["GET", "HEAD"])
    async def index(request: Request) -> Response:
        """The page: visualise, reconstruct and generate in the browser."""
        response = await page.get_response("index.html", request.scope)
        response.headers["Content-Security-Policy"] = PAGE_CSP
        return response

    @router.api_route("/static/{path:path}", methods=["GET", "HEAD"])
    async def static(path: str, request: Request) -> Response:
        return await page.get_response(path, request.scope)

    @router.api_route("/docs/assets/{path:path}", methods=["GET", "HEAD"])
    async def docs_asset(path: str, request: Request) -> Response:
        return await docs_assets.get_response(path, request.scope)

    @router.get("/docs")
    async def swagger(request: Request) -> HTMLResponse:
        root = _root(request)
        html = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/{FAVICON}",
            # the validator badge would load an image from swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )
        html.headers["Content-Security-Policy"] = DOCS_CSP
        return html

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        html = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}/docs/assets/redoc.standalone.js",
            redoc_favicon_url=f"{root}/{FAVICON}",
            with_google_fonts=False,
        )
        html.headers["Content-Security-Policy"] = DOCS_CSP
        return html

    return router


def install_web(app: FastAPI) -> None:
    """Add the page, its static files and the offline docs to ``app`` (made with
    ``docs_url=None, redoc_url=None``), after the routes already there."""
    app.include_router(_router(app.openapi_url or "/openapi.json", app.title))
