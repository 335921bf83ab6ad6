"""``/dashboard``: the web dashboard's page and its two files (``vectorizer/dashboard/static``).

The files load without an API key (:data:`vectorizer.api.auth.PUBLIC`): a browser cannot send a
header with a page load, and they hold no data, the same for every server. The page asks for the
key when the server wants one, keeps it in the tab's sessionStorage and sends it in the
``api-key`` header of every data call (``/vectorizer/*``, the search routes), which the key rules
guard as any call. No CDN, no framework: plain JavaScript and SVG (docs/decisions/0009).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import Response

router = APIRouter(include_in_schema=False)

#: The dashboard's files, by URL path: (file in the package, media type).
FILES = {"/dashboard": ("index.html", "text/html; charset=utf-8"),
         "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/dashboard/style.css": ("style.css", "text/css; charset=utf-8")}
#: Only this server's own files and calls, no inline script: what a page showing data needs and no more.
_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@router.get("/dashboard")
@router.get("/dashboard/{name}")
def dashboard(name: str = "") -> Response:
    entry = FILES.get(f"/dashboard/{name}" if name else "/dashboard")
    if entry is None:
        raise HTTPException(404, f"Not found: /dashboard/{name}")
    file, media_type = entry
    content = resources.files("vectorizer.dashboard").joinpath("static", file).read_bytes()
    return Response(content, media_type=media_type,
                    headers={"Content-Security-Policy": _POLICY, "Cache-Control": "no-cache"})
