"""The built single-page app (services/ops-console/web/dist), served from the console's own origin: no
CDN. Hashed assets are cached for a year; index.html answers every client route and is never cached."""

from __future__ import annotations

from pathlib import Path

from aftersales_shared.problems import not_found
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

NOT_BUILT = """<!doctype html><html lang="en"><meta charset="utf-8"><title>ops-console</title>
<h1>ops-console: the web app is not built</h1>
<p>Build it with <code>npm ci &amp;&amp; npm run build</code> in <code>services/ops-console/web</code>
(<code>make run</code> does this when its sources changed), then reload. The API is at <code>/api</code>,
its documentation at <a href="/docs">/docs</a>.</p></html>"""


class Assets(StaticFiles):
    """Vite's hashed bundles: a new build has new names, so each file may be kept for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def mount_spa(app: FastAPI, dist: Path) -> None:
    """The app at `/` when `dist` holds a build; otherwise `/` says how to make one. Routes added last."""
    router = APIRouter(include_in_schema=False)
    index = dist / "index.html"
    if not index.is_file():

        @router.get("/")
        async def not_built() -> HTMLResponse:
            return HTMLResponse(NOT_BUILT)

        app.include_router(router)
        return
    if (dist / "assets").is_dir():
        app.mount("/assets", Assets(directory=dist / "assets"), name="assets")
    root = dist.resolve()

    @router.get("/{path:path}")
    async def client_route(path: str) -> Response:
        if path == "api" or path.startswith("api/"):
            raise not_found("path", "/" + path)
        candidate = (root / path).resolve()
        if path and candidate.is_file() and candidate.is_relative_to(root):
            return FileResponse(candidate)  # favicon and the like, at the top of dist
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.include_router(router)
