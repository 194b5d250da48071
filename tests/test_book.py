"""The book's notebooks as files: no outputs, one setup cell everywhere, toc and disk agree, tags in place."""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import book  # noqa: E402  (tools/book.py)

NOTEBOOKS = book.notebooks()
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def test_there_are_chapters():
    chapters = [p for p in NOTEBOOKS if p.parent.name == "book"]
    assert len(chapters) >= 4, f"expected the four core chapters at least, found {IDS}"


def test_toc_and_disk_agree():
    in_toc = book.toc_files()
    missing = [str(p) for p in in_toc if not (ROOT / p).is_file()]
    assert not missing, f"_toc.yml names pages that do not exist: {missing}"
    on_disk = set(book.book_files())
    unlisted = sorted(str(p) for p in on_disk - set(in_toc))
    assert not unlisted, f"pages under book/ that _toc.yml does not list: {unlisted}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    nb = _load(path)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `python tools/book.py sync`"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: saved widget state; run `python tools/book.py sync`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_same_setup_cell_everywhere(path):
    nb = _load(path)
    cell = nb["cells"][book.setup_cell_index(nb)]
    assert _src(cell) == book.setup_cell_source(), (
        f"{path.name}: the first code cell is not the shared setup cell; run `python tools/book.py sync`")


def test_setup_cell_installs_from_the_configured_repository():
    src = book.setup_cell_source()
    assert book.repository_url() in src
    assert "resolve_scale" in src and "describe(SCALE)" in src


def test_repository_address_lives_only_in_config():
    """Outside _config.yml the address may appear only in generated setup cells."""
    url = book.repository_url()
    offenders = []
    for p in list((ROOT / "kadam_edu").rglob("*.py")) + list((ROOT / "book").rglob("*.md")):
        if url in p.read_text():
            offenders.append(str(p.relative_to(ROOT)))
    for p in NOTEBOOKS:
        nb = _load(p)
        setup = book.setup_cell_index(nb)
        if any(url in _src(c) for i, c in enumerate(nb["cells"]) if i != setup):
            offenders.append(str(p.relative_to(ROOT)))
    assert not offenders, f"the repository address is written by hand in {offenders}; read it from _config.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_starts_with_one_title(path):
    nb = _load(path)
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and _src(first).lstrip().startswith("# "), f"{path.name}: no '# ' title first"
    titles = [c for c in nb["cells"] if c["cell_type"] == "markdown" and re.search(r"^# ", _src(c), re.M)]
    assert len(titles) == 1, f"{path.name}: {len(titles)} top-level '# ' headings; the page title must be the only one"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_widget_cells_are_tagged(path):
    """nbval cannot compare widget outputs; every cell that builds an explorer must be tagged."""
    nb = _load(path)
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "code" and re.search(r"_explorer\(|ipywidgets|widgets\.interact", _src(c)):
            tags = c.get("metadata", {}).get("tags", [])
            assert "nbval-ignore-output" in tags, f"{path.name} cell {i} shows a widget but lacks the nbval-ignore-output tag"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parent.name == "book"],
                         ids=[i for p, i in zip(NOTEBOOKS, IDS) if p.parent.name == "book"])
def test_chapter_has_the_required_parts(path):
    nb = _load(path)
    md = "\n".join(_src(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "\n".join(_src(c) for c in nb["cells"] if c["cell_type"] == "code")
    assert re.search(r"learning goals", md, re.I), f"{path.name}: no learning goals"
    assert "Colab" in md, f"{path.name}: no note on opening the chapter in Colab on a GPU"
    assert re.search(r"^## Summary", md, re.M), f"{path.name}: no '## Summary' section"
    assert "{exercise}" in md and "{solution}" in md, f"{path.name}: no exercises with solutions"
    assert "_explorer(" in code, f"{path.name}: no ipywidgets explorer"


def test_labels_are_unique_across_the_book():
    seen: dict[str, str] = {}
    dupes = []
    for p in NOTEBOOKS:
        for c in _load(p)["cells"]:
            if c["cell_type"] != "markdown":
                continue
            for label in re.findall(r"^:label:\s*(\S+)|^\((\S+)\)=", _src(c), re.M):
                name = label[0] or label[1]
                if name in seen:
                    dupes.append(f"{name} ({seen[name]} and {p.name})")
                seen[name] = p.name
    assert not dupes, f"labels used twice: {dupes}"


def test_sync_is_a_fixed_point():
    for p in NOTEBOOKS:
        nb = _load(p)
        assert book.synced(book.synced(nb)) == book.synced(nb)


def _check_pages(monkeypatch, *, ci: str | None):
    import check_pages  # tools/check_pages.py

    monkeypatch.setattr(check_pages, "browser", lambda: None)  # a machine without Chromium
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return check_pages


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_page_check_fails_in_ci_without_chromium(monkeypatch, capsys, ci):
    """Issue 10, item 14: in CI a missing browser must fail the page check, never skip it."""
    check_pages = _check_pages(monkeypatch, ci=ci)
    assert check_pages.main([str(ROOT / "_build" / "html")]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_page_check_skips_without_chromium_outside_ci(monkeypatch, capsys, ci):
    check_pages = _check_pages(monkeypatch, ci=ci)
    assert check_pages.main([str(ROOT / "_build" / "html")]) == 0
    assert "pages not checked" in capsys.readouterr().out


def test_ci_installs_chromium_and_runs_make_check():
    """.ci/run installs Debian's chromium when no browser is found, marks the run as CI, runs `make check`."""
    script = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"apt-get install [^\n]*\bchromium\b", script)
    assert install, ".ci/run does not install chromium"
    assert script.index("check_pages") < install.start(), "the install is not guarded by check_pages' browser lookup"
    assert re.search(r"^export CI=", script, re.M), ".ci/run does not set CI for check_pages"
    assert re.search(r"^make check$", script, re.M)
