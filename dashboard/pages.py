"""The static pages and their assets: only the log-in page's files are served without a session."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from dashboard.files import UnsafePath, safe_join

STATIC = Path(__file__).parent / "static"
# what the log-in page needs before anyone is logged in; every other file needs a session
PUBLIC_STATIC = frozenset({"login.js", "common.js", "style.css", "i18n/en.json", "i18n/zh-CN.json",
                           "officer.js", "favicon.svg"})  # officer.js: the phone page opened by a one-time link
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".json": "application/json; charset=utf-8", ".svg": "image/svg+xml", ".wav": "audio/wav",
         ".png": "image/png"}


# The head every page shares.  A page file starting with ``<head>`` holds only its own head lines (its
# stylesheet) and its body; ``render`` puts it in the document.  A file that is a whole document
# (``<!doctype html>``) is served as it is.
SHARED_HEAD = ('<!doctype html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
               '<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>Sharp Eyes</title>\n'
               '<link rel="stylesheet" href="/static/style.css">\n')
# The page header every page with a nav shares: the app's name, the page's own title and the nav the pages'
# script fills.  A page asks for it with ``data-header="ATTRIBUTE KEY"`` on its ``<body>`` tag: the title's
# catalogue attribute (data-i18n, data-xi18n, ...) and its key.
HEADER = ('<header><h1><span data-i18n="app.name"></span> <span class="sub" {attr}="{key}"></span></h1>'
          '<nav id="nav"></nav></header>\n')
# The script every page runs first (SE: catalogues, the API, the header's nav), put before the page's own.
SHARED_SCRIPT = '<script src="/static/common.js"></script>\n'
_BODY_WITH_HEADER = re.compile(r'<body\b[^>]*\sdata-header="(data-[a-z0-9-]+) ([A-Za-z0-9_.-]+)"[^>]*>\n')


def render(text: str) -> str:
    """The document served for a page file: the shared head lines added to a file that starts with ``<head>``,
    the shared header after a ``<body data-header=...>`` tag, the shared script before the page's first script
    (or its ``</body>``) unless the file names it itself."""
    if not text.startswith("<head>"):
        return text
    text = _BODY_WITH_HEADER.sub(lambda m: m.group(0) + HEADER.format(attr=m.group(1), key=m.group(2)), text, count=1)
    if SHARED_SCRIPT not in text:
        at = text.find("<script")
        at = text.rindex("</body>") if at < 0 else at
        text = text[:at] + SHARED_SCRIPT + text[at:]
    return SHARED_HEAD + text.removeprefix("<head>").lstrip("\n") + "</html>\n"


def page(name: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(render((STATIC / name).read_text(encoding="utf-8")), status_code=status,
                        headers={"Cache-Control": "no-store"})


def add_pages(router: APIRouter, pages: dict[str, str]) -> None:
    """GET routes (left out of the API schema) that serve each page file at its path, for any logged-in user."""
    for path, name in pages.items():
        router.add_api_route(path, _serve(name), methods=["GET"], include_in_schema=False,
                             response_class=HTMLResponse)


def _serve(name: str) -> Callable[[], Awaitable[HTMLResponse]]:
    async def serve_page() -> HTMLResponse:
        return page(name)
    return serve_page


def static_file(rel: str) -> FileResponse | None:
    """A file under static/, or None when the path leaves it or names nothing."""
    try:
        path = safe_join(STATIC, rel)
    except UnsafePath:
        return None
    if path.suffix not in TYPES:
        return None
    return FileResponse(path, media_type=TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
