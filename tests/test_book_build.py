"""The book builds from a clone that holds a virtualenv or other tool folders (issue 10, item 13).

`python -m venv .venv` inside the clone (uv, Poetry and VS Code do it by default) puts thousands
of markdown and rST files under `.venv/lib/python3.X/site-packages`; unless _config.yml's
exclude_patterns name the folder, Jupyter Book reads them and `-W` fails the build.
Needs the book extras (Sphinx, Jupyter Book): skips without them, except in CI (CI=true or 1).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folders the issue names, at the top of the clone; site-packages at any depth.
TOOL_FOLDERS = [".venv", "venv", "env", ".tox", ".nox", "build", "dist"]
SITE_PACKAGES = "lib/python3.11/site-packages/pkg"
# Markup that makes Sphinx warn: an unknown role, an undefined label, a broken link.
BAD_RST = "Bad\n===\n\n:nosuchrole:`x` and :ref:`no-such-label`.\n\n.. nosuchdirective::\n"
BAD_MD = "# A package's README\n\nSee [the docs](no-such-file.md) and {ref}`no-such-label`.\n"


def _need(module: str):
    """Import a book extra; fail under CI (a skip must not pass there), skip elsewhere."""
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"{module} is not installed; CI installs the book extras (pip install -e '.[book]')")
        pytest.skip(f"{module} is not installed (pip install -e '.[book]')")


def _config() -> dict:
    return _need("yaml").safe_load((ROOT / "_config.yml").read_text())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _tree(root: Path) -> tuple[set[str], set[str]]:
    """Write book-like files and tool-folder files under root; return (kept, excluded) paths."""
    excluded = {f"{d}/{SITE_PACKAGES}/README.md" for d in TOOL_FOLDERS}
    excluded |= {f"{d}/share/doc/notes.rst" for d in TOOL_FOLDERS}
    excluded |= {"book/.venv/" + SITE_PACKAGES + "/README.md",  # a venv made in a subfolder
                 "_build/html/_sources/page.md", ".pytest_cache/README.md",
                 "book/.ipynb_checkpoints/ch1-checkpoint.ipynb"}
    kept = {"book/intro.md", "book/ch1.ipynb", "book/environment.md", "book/env/notes.md",
            "book/build/notes.md", "distributions.md"}
    for rel in excluded | kept:
        _write(root / rel, "# x\n")
    return kept, excluded


def test_tool_folders_are_excluded_from_the_book(tmp_path):
    """Sphinx's discovery (prunes a matching folder) and its Matcher (on each file path) both skip them."""
    _need("sphinx")
    from sphinx.util.matching import Matcher, get_matching_files

    patterns = _config()["exclude_patterns"]
    kept, excluded = _tree(tmp_path)
    found = set(get_matching_files(tmp_path, exclude_patterns=patterns))
    assert found == kept, f"read: {sorted(found - kept)}; wrongly excluded: {sorted(kept - found)}"
    matcher = Matcher(patterns)
    unmatched = sorted(p for p in excluded if not matcher(p))
    assert not unmatched, f"exclude_patterns miss these files (only their folder is pruned): {unmatched}"
    assert not any(matcher(p) for p in kept)


def test_book_builds_with_a_virtualenv_in_the_clone(tmp_path):
    """A one-page book with the real _config.yml and a .venv full of bad markup builds with -W."""
    _need("jupyter_book")
    config = _config()
    config["execute"]["execute_notebooks"] = "off"
    (tmp_path / "_config.yml").write_text(_need("yaml").safe_dump(config))
    _write(tmp_path / "_toc.yml", "format: jb-book\nroot: intro\n")
    _write(tmp_path / "intro.md", "# Intro\n\nA page.\n")
    for d in TOOL_FOLDERS:
        _write(tmp_path / d / SITE_PACKAGES / "README.md", BAD_MD)
        _write(tmp_path / d / SITE_PACKAGES / "bad.rst", BAD_RST)
    cli = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"
    out = subprocess.run(
        [sys.executable, "-c", cli, "build", str(tmp_path), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "KADAM_PROGRESS": "0"},
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"jupyter-book build failed:\n{log[-4000:]}"
    assert (tmp_path / "_build" / "html" / "intro.html").is_file()
    leaked = [d for d in TOOL_FOLDERS if (tmp_path / "_build" / "html" / d).exists()]
    assert not leaked, f"pages built from {leaked}"

