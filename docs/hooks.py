"""mkdocs hooks for keras_bp's site (`make docs`): the READMEs as pages, links that work offline.

- README.md (the repository's front page, outside docs/) becomes the home page `index.md`, and
  README.zh-CN.md becomes `zh-CN.md`.
- Every relative link, in a Markdown page or a notebook, is resolved from the file's place in the
  repository: one to a file the site has points to that page; one to a file the site does not
  have (a module, a script, the Makefile) keeps its text, in code style, without a link.
- KaTeX (Debian's libjs-katex, or `$KATEX_DIR`) is copied into the site, and the notebooks'
  MathJax script from a CDN is dropped: formulas render from the built folder, with no network.
"""

import os
import posixpath
import re
import shutil
from pathlib import Path

from markdown.extensions.toc import slugify_unicode as slugify
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
# Repository path -> site source path, for files that live outside docs/.
GENERATED = {"README.md": "index.md", "README.zh-CN.md": "zh-CN.md"}
KATEX_DIR = Path(os.environ.get("KATEX_DIR", "/usr/share/javascript/katex"))

MARKDOWN_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
HTML_LINK = re.compile(r'(href|src)="([^"#:]+\.(?:md|ipynb))(#[^"]*)?"')
CDN_SCRIPT = re.compile(r'<script[^>]+src="https?://[^"]*mathjax[^"]*"[^>]*>\s*</script>', re.I)
NOTEBOOK_HEADING = re.compile(
    r'<h(?P<level>[1-6]) id="[^"]*">(?P<text>.*?)'
    r'<a class="anchor-link" href="#[^"]*">¶</a></h(?P=level)>'
)
MATHJAX_CONFIG = re.compile(r'<script type="text/x-mathjax-config">.*?</script>', re.S | re.I)


def on_files(files, config):
    """Add the READMEs as pages, each with its repository path remembered for its links."""
    for repo_path, src_uri in GENERATED.items():
        path = ROOT / repo_path
        if path.exists():
            files.append(File.generated(config, src_uri, content=path.read_text()))
    return files


def _repo_path(src_uri: str) -> str:
    """The repository path of a site source file: `trainers.md` -> `docs/trainers.md`."""
    for repo_path, generated in GENERATED.items():
        if src_uri == generated:
            return repo_path
    return f"docs/{src_uri}"


def _site_target(repo_target: str, files) -> str | None:
    """The site source path of a repository file, if the site has it."""
    if repo_target in GENERATED:
        return GENERATED[repo_target]
    if repo_target.startswith("docs/") and files.get_file_from_path(repo_target[5:]):
        return repo_target[5:]
    return None


def _rewrite(target: str, page_src: str, files) -> str | None:
    """A relative link written in `page_src` (site source path), as the site must write it;
    `None` when the site has no such file. Absolute URLs and anchors are left alone."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
        return target
    path, _, anchor = target.partition("#")
    if not path:
        return target
    repo_file = _repo_path(page_src)
    repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(repo_file), path))
    site_target = _site_target(repo_target, files)
    if site_target is None:
        return None
    relative = posixpath.relpath(site_target, posixpath.dirname(page_src) or ".")
    return relative + (f"#{anchor}" if anchor else "")


def on_page_markdown(markdown, page, config, files):
    def replace(match):
        bang, text, target = match.groups()
        new = _rewrite(target, page.file.src_uri, files)
        if new is not None:
            return f"{bang}[{text}]({new})"
        # No page for it in the site (a module, a script): keep the name, drop the link.
        return text if text.startswith("`") else f"`{text}`"

    return MARKDOWN_LINK.sub(replace, markdown)


def on_page_content(html, page, config, files):
    """Notebooks' links, which the Markdown step above never sees, and their CDN MathJax."""
    if not page.file.src_uri.endswith(".ipynb"):
        return html

    def replace(match):
        attribute, target, anchor = match.groups()
        new = _rewrite(target, page.file.src_uri, files)
        if new is None:
            return match.group(0)
        src = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), new))
        url = _relative_url(page.url, files.get_file_from_path(src).url)
        return f'{attribute}="{url}{anchor or ""}"'

    html = CDN_SCRIPT.sub("", MATHJAX_CONFIG.sub("", html))
    return _heading_ids(HTML_LINK.sub(replace, html), page.toc)


def _heading_ids(html, toc):
    """Give a notebook's headings the ids its table of contents links to.

    nbconvert's ids keep ASCII only, so a Chinese heading gets an empty or repeated id, while
    the table of contents slugs the headings its own way. Both list the same headings in the
    same order: each heading gets a Unicode slug of its text, and the contents entry its id.
    """
    entries, stack = [], list(reversed(list(toc)))
    while stack:
        entry = stack.pop()
        entries.append(entry)
        stack.extend(reversed(entry.children))
    headings = list(NOTEBOOK_HEADING.finditer(html))
    if len(headings) != len(entries):
        return html  # not the same headings: leave them, and the browser test will say so
    used, pieces, end = set(), [], 0
    for heading, entry in zip(headings, entries, strict=True):
        slug = slugify(re.sub(r"<[^>]+>", "", heading["text"]), "-") or "section"
        unique, n = slug, 1
        while unique in used:
            unique, n = f"{slug}_{n}", n + 1
        used.add(unique)
        entry.id = unique
        pieces.append(html[end : heading.start()])
        pieces.append(
            f'<h{heading["level"]} id="{unique}">{heading["text"]}'
            f'<a class="anchor-link" href="#{unique}">¶</a></h{heading["level"]}>'
        )
        end = heading.end()
    return "".join(pieces) + html[end:]


def _relative_url(from_url: str, to_url: str) -> str:
    """`to_url` relative to the page at `from_url` (a directory URL ends in "/")."""
    base = from_url if from_url.endswith("/") or not from_url else posixpath.dirname(from_url)
    relative = posixpath.relpath(to_url or ".", base or ".")
    return relative + "/" if to_url.endswith("/") and relative != "." else relative


def on_post_build(config):
    """KaTeX, served from the built folder."""
    needed = [KATEX_DIR / "katex.min.js", KATEX_DIR / "katex.min.css"]
    needed += [KATEX_DIR / "contrib" / "auto-render.js", KATEX_DIR / "fonts"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise PluginError(
            f"KaTeX not found ({', '.join(missing)}): apt-get install libjs-katex, "
            "or set KATEX_DIR to a KaTeX release"
        )
    dest = Path(config.site_dir) / "assets" / "katex"
    dest.mkdir(parents=True, exist_ok=True)
    for path in needed:
        target = dest / path.name
        if path.is_dir():
            shutil.copytree(path.resolve(), target, dirs_exist_ok=True)
        else:
            shutil.copyfile(path.resolve(), target)
