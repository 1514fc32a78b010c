"""The README and docs/ hold together: every relative link and image resolves, every #anchor names
a heading of its target (slugged as the docs site slugs it), and every command the README shows
is a `make` target of the Makefile or a script that exists."""

import re
import shlex
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}


def pages(root=ROOT):
    """README.md and every Markdown page under docs/."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.exists()]


def prose_lines(text):
    """`(line number, line)` outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def code_blocks(text):
    """`(language, first line number, [lines])` of each fenced code block."""
    block, language, start = None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            if block is None:
                block, language, start = [], line.strip().strip("`~").strip().lower(), number + 1
            else:
                yield language, start, block
                block = None
        elif block is not None:
            block.append(line)


def slug(heading):
    """The docs site's anchor for a heading (Python-Markdown's toc `slugify`, which mkdocs uses):
    the text as rendered (no backticks, link text only), accents folded and other non-ASCII
    dropped, lowercase, punctuation dropped, runs of spaces and hyphens to one hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r"(\*\*|\*)(.+?)\1", r"\2", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path):
    """Every heading's anchor in a Markdown file; repeats get `_1`, `_2`, as the site does."""
    ids = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            anchor = base = slug(match.group(2))
            count = 0
            while anchor in ids or not anchor:
                count += 1
                anchor = f"{base}_{count}"
            ids.add(anchor)
    return ids


def links(path):
    """`(line number, target)` of every Markdown and HTML link and image outside code."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub("", line)
        for pattern in (MARKDOWN_LINK, HTML_LINK):
            for match in pattern.finditer(line):
                yield number, match.group(1)


def broken_links(files, root=ROOT):
    """One line per relative link or image that does not resolve."""
    problems = []
    for path in files:
        where = path.relative_to(root)
        for number, target in links(path):
            if SCHEME.match(target) or target.startswith("//"):
                continue  # a web address: not checked offline
            file_part, _, anchor = target.partition("#")
            if file_part.startswith("/"):
                problems.append(f"{where}:{number}: {target}: absolute path; make it relative")
                continue
            resolved = (path.parent / file_part).resolve() if file_part else path
            if not resolved.exists():
                problems.append(f"{where}:{number}: {target}: no such file")
            elif not resolved.is_relative_to(root.resolve()):
                problems.append(f"{where}:{number}: {target}: outside the repository")
            elif anchor:
                if resolved.suffix != ".md":
                    problems.append(f"{where}:{number}: {target}: an anchor into a non-page")
                elif anchor not in anchors(resolved):
                    problems.append(f"{where}:{number}: {target}: no heading #{anchor} there")
    return problems


def make_targets(makefile):
    """The Makefile's targets (rule names, not variable assignments)."""
    targets = set()
    for line in Path(makefile).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-][A-Za-z0-9_. -]*):(?!=)", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


def commands(readme):
    """`(line number, command)`: each line of a shell code block, and each inline code span that
    starts with `make` or a Python interpreter."""
    text = readme.read_text(encoding="utf-8")
    for language, start, lines in code_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        command, first = "", start
        for offset, line in enumerate(lines):
            if not command:
                first = start + offset
            command += line.rstrip("\\").strip() + " "
            if not line.rstrip().endswith("\\"):
                command = command.split(" #")[0].strip().removeprefix("$ ")
                if command and not command.startswith("#"):
                    yield first, command
                command = ""
    for number, line in prose_lines(text):
        for match in CODE_SPAN.finditer(line):
            span = match.group(2).strip()
            if re.match(r"(make|python3?|\S*/bin/python3?)\s", span):
                yield number, span


def bad_commands(readme, root=ROOT):
    """One line per README command that is neither a Makefile target nor an existing script run
    with the environment's interpreter."""
    targets = make_targets(root / "Makefile")
    problems = []
    for number, command in commands(readme):
        words = [w for w in shlex.split(command) if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
        where = f"{readme.relative_to(root)}:{number}: {command}"
        if words[:1] == ["make"]:
            missing = [w for w in words[1:] if not w.startswith("-") and w not in targets]
            if missing:
                problems.append(f"{where}: no make target {', '.join(missing)}")
        elif words[:1] == [".venv/bin/python"]:
            script = next((w for w in words[1:] if w.endswith(".py")), None)
            if script is None or not (root / script).is_file():
                problems.append(f"{where}: no such script {script}")
        else:
            problems.append(f"{where}: not a make target or .venv/bin/python scripts/...")
    return problems


# The checks on this repository


def test_every_relative_link_and_image_resolves():
    files = pages()
    assert ROOT / "README.md" in files and len(files) > 5
    assert sum(1 for path in files for _ in links(path)) > 30  # the checker sees the links
    assert broken_links(files) == []


def test_every_readme_command_is_a_make_target_or_a_script():
    found = list(commands(ROOT / "README.md"))
    assert any(c.startswith("make train") for _, c in found), found
    assert any(c.startswith(".venv/bin/python scripts/") for _, c in found), found
    assert bad_commands(ROOT / "README.md") == []


def test_the_slugs_are_the_docs_sites():
    """The site's own Markdown library gives every heading of these pages the same anchor."""
    markdown = pytest.importorskip("markdown")
    for path in pages():
        html = markdown.markdown(
            path.read_text(encoding="utf-8"), extensions=["toc", "tables", "fenced_code"]
        )
        expected = set(re.findall(r"<h[1-6] id=\"([^\"]+)\"", html))
        assert anchors(path) == expected, path


# The checker can fail


def test_the_checker_reports_each_kind_of_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page: `make` it\n\n## Why? Because\n")
    (tmp_path / "figure.png").write_bytes(b"")
    (tmp_path / "README.md").write_text(
        "# Title\n\n"
        "[fine](docs/page.md#a-page-make-it) [fine](docs/page.md#why-because) ![ok](figure.png)\n"
        "[up](#title) [web](https://example.com/x.md) `[in code](nowhere.md)`\n"
        "[gone](docs/missing.md)\n"
        "[bad anchor](docs/page.md#a-page)\n"
        "![no image](missing.png)\n"
        '<img src="also-missing.png">\n'
        "[self](#nothing-here)\n"
        "```\n[in a block](nowhere.md)\n```\n"
    )
    problems = broken_links(pages(tmp_path), root=tmp_path)
    assert [p.split(": ", 1)[0] for p in problems] == [f"README.md:{n}" for n in (5, 6, 7, 8, 9)]
    assert "no such file" in problems[0] and "no heading #a-page" in problems[1]
    assert "missing.png" in problems[2] and "also-missing.png" in problems[3]
    assert "#nothing-here" in problems[4]


def test_the_checker_reports_commands_that_do_not_run_on_a_fresh_clone(tmp_path):
    (tmp_path / "Makefile").write_text("X := 1\n.PHONY: train\ntrain: install\n\techo\ninstall:\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.py").write_text("")
    (tmp_path / "README.md").write_text(
        "```sh\nmake train   # a comment\nmake install train\n"
        ".venv/bin/python scripts/run.py --flag \\\n    --more\nmake nosuch\n"
        "python scripts/run.py\n.venv/bin/python scripts/gone.py\n```\n\n"
        "Run `make X` or `.venv/bin/python scripts/run.py`; then `python scripts/run.py`.\n"
    )
    problems = bad_commands(tmp_path / "README.md", root=tmp_path)
    assert len(problems) == 5, problems
    assert "no make target nosuch" in problems[0]
    assert "python scripts/run.py: not a make target" in problems[1]
    assert "no such script scripts/gone.py" in problems[2]
    assert "make X: no make target X" in problems[3]
    assert problems[4].endswith(
        "python scripts/run.py: not a make target or .venv/bin/python scripts/..."
    )


def test_every_file_path_the_docs_name_exists():
    """`keras_bp/training/loop.py`, `scripts/parity.py`, `tests/test_loop.py`: paths named in
    code style, which the docs site shows without a link, still name files that exist."""
    named = re.compile(r"`((?:keras_bp|scripts|tests)/[\w/]+\.py)")
    found, missing = 0, []
    for path in pages():
        for number, line in prose_lines(path.read_text(encoding="utf-8")):
            for name in named.findall(line):
                found += 1
                if not (ROOT / name).is_file():
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert found > 20
    assert missing == []


def test_the_readme_stays_a_front_page():
    """At most 200 lines; the rest lives on the docs pages it links."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    linked = {target.partition("#")[0] for _, target in links(ROOT / "README.md")}
    pages_linked = {p for p in linked if p.startswith("docs/") and p.endswith(".md")}
    assert len(pages_linked) >= 8, pages_linked


def test_the_python_apis_backprop_snippet_runs_with_the_shapes_it_states():
    """docs/api.md's first Python block, run as written."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    snippet = next(
        "\n".join(lines) for language, _, lines in code_blocks(text) if language == "python"
    )
    assert "backprop.network_backward" in snippet
    scope = {}
    exec(compile(snippet, "docs/api.md", "exec"), scope)
    shapes = {
        name: tuple(scope[name].shape) for name in ("y", "dy", "dx", "dw1", "db1", "dw2", "db2")
    }
    assert shapes == {
        "y": (128, 10),
        "dy": (128, 10),
        "dx": (128, 784),
        "dw1": (784, 512),
        "db1": (512,),
        "dw2": (512, 10),
        "db2": (10,),
    }
    assert tuple(scope["loss"].shape) == () and str(scope["w1"].dtype) == "float32"
