"""The built documentation site works in a real browser, offline: `make test-site`.

Every page of site/ (`make docs`) is opened from the folder itself (file://) in Debian's headless
chromium, driven by Playwright; no request may leave the folder. A page fails on a JavaScript
error or console error, an image that did not render (naturalWidth 0), or a link to a page or
#anchor the site does not have. The tutorial pages must show typeset formulas and their figures,
search must find the lesson, and a screenshot of each tutorial's first screen is saved under
runs/site-screenshots/ (git-ignored) for a person to look at.

`make test` skips this test: it needs the built site and a browser, and `make test-site` builds
the one and runs the other.
"""

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from conftest import ROOT

SITE = ROOT / "site"
SCREENSHOTS = ROOT / "runs" / "site-screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TUTORIALS = {"en": "tutorial/lesson.html", "zh-CN": "tutorial/lesson.zh-CN.html"}

if not os.environ.get("KERAS_BP_TEST_SITE"):
    pytest.skip(
        "the browser test runs with `make test-site` (builds the site, needs Debian's chromium)",
        allow_module_level=True,
    )
if not Path(CHROMIUM).exists():  # asked for by `make test-site`: a missing browser is a failure
    pytest.fail("chromium not found: `apt-get install chromium`, then `make test-site`", False)
playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[docs]'")


def site_pages():
    """Every HTML page of the built site, as paths relative to it."""
    if not (SITE / "index.html").exists():
        pytest.fail("site/ is not built: run `make docs` (or `make test-site`)")
    skip = {"assets", "search"}
    return sorted(
        p.relative_to(SITE).as_posix()
        for p in SITE.rglob("*.html")
        # 404.html is for a web server to send, from the site's root: it links from there.
        if not skip & set(p.relative_to(SITE).parts[:-1]) and p.name != "404.html"
    )


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def visits(browser):
    """Open every page once: `{page: {"errors", "images", "links", "ids", "katex", ...}}`."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    outside = []

    def only_the_folder(route):
        # Offline means offline: anything but the site's own files is refused, and reported.
        url = route.request.url
        if url.startswith(("file://", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_the_folder)
    results = {}
    for name in site_pages():
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e, errors=errors: errors.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m, errors=errors: (
                errors.append(f"console: {m.text}") if m.type == "error" else None
            ),
        )
        page.on(
            "requestfailed",
            lambda r, errors=errors: errors.append(f"request failed: {r.url} {r.failure}"),
        )
        response = page.goto((SITE / name).as_uri(), wait_until="load")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(200)  # KaTeX typesets on the document$ event, after load
        results[name] = {
            "loaded": response is None or response.ok,
            "title": page.title(),
            "errors": errors,
            "images": page.eval_on_selector_all(
                "img", "els => els.map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth])"
            ),
            "links": page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)"),
            "ids": set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)")),
            "names": set(page.eval_on_selector_all("a[name]", "els => els.map(e => e.name)")),
            "katex": page.eval_on_selector_all(".katex", "els => els.length"),
            "raw_math": page.evaluate(
                "() => [...document.querySelectorAll('.jupyter-wrapper .jp-MarkdownOutput')]"
                ".map(e => e.innerText).filter(t => /\\$\\$|\\\\frac|\\\\partial/.test(t)).length"
            ),
        }
        for language, tutorial in TUTORIALS.items():
            if name == tutorial:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / f"lesson.{language}.png"))
        page.close()
    context.close()
    return {"pages": results, "outside": outside}


def test_the_site_has_every_page_in_the_nav(visits):
    pages = visits["pages"]
    for expected in ["index.html", "zh-CN.html", "report/report.html", *TUTORIALS.values()]:
        assert expected in pages, sorted(pages)
    assert len(pages) >= 8


def test_every_page_loads_without_errors_and_stays_offline(visits):
    failures = {
        name: v["errors"] for name, v in visits["pages"].items() if v["errors"] or not v["loaded"]
    }
    assert not failures, failures
    assert visits["outside"] == [], "requests that left the folder: " + ", ".join(visits["outside"])


def test_every_image_renders(visits):
    broken = {
        name: [src for src, complete, width in v["images"] if not complete or width == 0]
        for name, v in visits["pages"].items()
    }
    broken = {name: srcs for name, srcs in broken.items() if srcs}
    assert not broken, broken
    images = sum(len(v["images"]) for v in visits["pages"].values())
    assert images >= 10  # the report's figures and the tutorials' at least


def test_every_internal_link_and_anchor_resolves(visits):
    pages = visits["pages"]
    broken = []
    for name, v in pages.items():
        for href in v["links"]:
            url, anchor = urldefrag(href)
            if not url.startswith("file://"):
                continue
            path = Path(unquote(urlparse(url).path))
            if path.is_dir():
                path = path / "index.html"
            if not path.exists():
                broken.append(f"{name} -> {href}")
                continue
            if anchor and path.suffix == ".html":
                target = pages.get(path.relative_to(SITE).as_posix())
                if target is not None and unquote(anchor) not in target["ids"] | target["names"]:
                    broken.append(f"{name} -> {href} (no such anchor)")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("language", TUTORIALS)
def test_the_tutorial_shows_formulas_and_figures(visits, language):
    tutorial = visits["pages"][TUTORIALS[language]]
    assert tutorial["katex"] >= 30, "formulas were not typeset"
    assert tutorial["raw_math"] == 0, "TeX source left untypeset in a Markdown cell"
    rendered = [src for src, _, width in tutorial["images"] if width > 300]
    assert len(rendered) >= 5  # the five figures of the lesson
    assert (SCREENSHOTS / f"lesson.{language}.png").stat().st_size > 20_000


def test_search_finds_the_lesson_offline(browser):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((SITE / "index.html").as_uri())
    page.fill("input[data-md-component=search-query]", "GradientTape")
    results = page.wait_for_selector(".md-search-result__item", timeout=10_000)
    assert results is not None and not errors, errors
    page.close()
