"""Swagger UI at ``/docs``, over the served ``/openapi.json``; its files come from the pinned
``fastapi-offline`` package (Swagger UI 5, no CDN: docs/decisions/0010-swagger-ui.md).

The page and its files load without an API key (``vectorizer.api.auth.PUBLIC``): they are the
same for every server and carry no data. Everything they fetch needs the key as any request
does: ``init.js`` fetches ``/openapi.json``, asks for the key once when that answers 401, keeps
it in the tab (``sessionStorage``) and sends it as ``api-key`` on every request; Swagger's
"Authorize" button sets it too. The page forbids every script but its own (Content-Security-Policy).
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, HTTPException
from starlette.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

#: The files served under ``/docs/``: name -> media type.
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
          "favicon.png": "image/png", "init.js": "text/javascript; charset=utf-8"}
_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
           "connect-src 'self'; frame-ancestors 'none'")

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Vectorizer API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

_INIT = """"use strict";
// Vectorizer's Swagger UI: the API key stays in this tab and goes in the api-key header.
(function () {
  const STORE = "vectorizer-api-key";
  const key = () => sessionStorage.getItem(STORE);
  function start() {
    const ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      requestInterceptor: (request) => {
        const k = key();
        if (k && !request.headers["api-key"] && !request.headers["Authorization"]) {
          request.headers["api-key"] = k;
        }
        return request;
      },
      onComplete: () => { if (key()) { ui.preauthorizeApiKey("api-key", key()); } },
    });
    window.ui = ui;
  }
  const headers = key() ? {"api-key": key()} : {};
  fetch("/openapi.json", {headers}).then((answer) => {
    if (answer.status === 401) {
      const given = window.prompt("This server needs an API key (sent in the api-key header):");
      if (given) { sessionStorage.setItem(STORE, given); }
    }
    start();
  }, start);
})();
"""


def _static() -> Traversable:
    return resources.files("fastapi_offline").joinpath("static")


@router.get("/docs")
def docs() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers={"Content-Security-Policy": _POLICY, "Cache-Control": "no-cache"})


@router.get("/docs/{asset}")
def asset(asset: str) -> Response:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(404, f"Not found: /docs/{asset}")
    content = _INIT.encode() if asset == "init.js" else _static().joinpath(asset).read_bytes()
    return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
