"""Every page is served as one whole document: the shared head (charset, title, stylesheet) once, then the
page's own head lines and its body, whether its file holds the whole document or only its own part."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard.pages import SHARED_HEAD, SHARED_SCRIPT, STATIC, render

PAGES = sorted(STATIC.glob("*.html"))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_a_page_is_served_as_one_whole_document(path: Path) -> None:
    served = render(path.read_text(encoding="utf-8"))
    assert served.startswith('<!doctype html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n')
    head, sep, body = served.partition("</head>")
    assert sep, f"{path.name}: no </head>"
    for tag in ("<!doctype", "<html", "<head>", 'charset="utf-8"', "<title>", 'href="/static/style.css"'):
        assert served.count(tag) == 1, f"{path.name}: {tag} {served.count(tag)} times"
    assert "<body" not in head and re.search(r"<body[ >]", body), path.name
    assert served.rstrip().endswith("</body>\n</html>"), path.name


def test_a_file_with_only_its_own_part_gets_the_shared_head_and_keeps_its_own_lines() -> None:
    own = '<head>\n<link rel="stylesheet" href="/static/x.css">\n</head>\n<body>\n<p>x</p>\n</body>\n'
    assert render(own) == SHARED_HEAD + '<link rel="stylesheet" href="/static/x.css">\n</head>\n<body>\n<p>x</p>\n' \
        + SHARED_SCRIPT + "</body>\n</html>\n"
    empty = SHARED_HEAD + "</head>\n<body>" + SHARED_SCRIPT + "</body>\n</html>\n"
    assert render("<head></head>\n<body></body>\n") == empty


def test_a_whole_document_is_served_as_it_is() -> None:
    doc = "<!doctype html>\n<html><head><title>t</title></head><body></body></html>\n"
    assert render(doc) == doc


def test_a_body_asking_for_the_header_gets_the_shared_header_after_its_tag() -> None:
    own = '<head>\n</head>\n<body data-page="x" data-header="data-xi18n export.title">\n<main></main>\n</body>\n'
    served = render(own)
    assert served.count("<header>") == 1 and served.count('name="viewport"') == 1
    header = ('<header><h1><span data-i18n="app.name"></span> <span class="sub" data-xi18n="export.title"></span></h1>'
              '<nav id="nav"></nav></header>')
    assert f'<body data-page="x" data-header="data-xi18n export.title">\n{header}\n<main>' in served
    assert "<header>" not in render("<head>\n</head>\n<body>\n<main></main>\n</body>\n")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_page_runs_the_shared_script_once_before_its_own(path: Path) -> None:
    served = render(path.read_text(encoding="utf-8"))
    scripts = re.findall(r'<script src="([^"]+)"', served)
    assert scripts and scripts[0] == "/static/common.js" and scripts.count("/static/common.js") == 1, scripts


def test_the_shared_script_goes_before_the_first_script_or_the_end_of_the_body() -> None:
    assert render('<head>\n</head>\n<body>\n<script src="/static/x.js"></script>\n</body>\n').endswith(
        '<body>\n<script src="/static/common.js"></script>\n<script src="/static/x.js"></script>\n</body>\n</html>\n')
    assert render("<head>\n</head>\n<body>\n<p>x</p>\n</body>\n").endswith(
        '<p>x</p>\n<script src="/static/common.js"></script>\n</body>\n</html>\n')
