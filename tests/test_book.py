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


@pytest.mark.parametrize("toc", book.TOCS)
def test_toc_names_existing_pages(toc):
    missing = [str(p) for p in book.toc_files(toc) if not (ROOT / p).is_file()]
    assert not missing, f"{toc} names pages that do not exist: {missing}"


def test_toc_and_disk_agree():
    """Every page under book/ is in _toc.yml, or (the assignments' masters) in _toc_solutions.yml."""
    in_toc = {p for toc in book.TOCS for p in book.toc_files(toc)}
    unlisted = sorted(str(p) for p in set(book.book_files()) - in_toc)
    assert not unlisted, f"pages under book/ that neither toc lists: {unlisted}"


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


# Issue 12 (Colab): the release the setup cell installs, the GPU notice, the GPU runtime metadata.

COLAB_GPU = {"gpuType": "T4", "provenance": []}
TRAINING_CHAPTERS = {"ch1_continuous_time", "ch2_stability_region", "ch3_scale_invariance", "ch4_kadam",
                     "ch5_noise_and_batch_size", "ch6_edge_of_stability"}


def _pyproject_version() -> str:
    return re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def test_release_matches_the_package_version():
    """_config.yml's repository.release is the git tag of the package version the book documents."""
    import kadam_edu

    version = _pyproject_version()
    assert book.release() == f"v{version}", (
        f"_config.yml repository.release is {book.release()!r} but pyproject.toml's version is {version!r}; "
        "bump both together")
    assert kadam_edu.__version__ == version, "kadam_edu.__version__ and pyproject.toml disagree"


def test_setup_cell_installs_the_release_never_main():
    src = book.setup_cell_source()
    assert f'RELEASE = "{book.release()}"' in src and "@{RELEASE}" in src
    offenders = [str(p.relative_to(ROOT)) for p in NOTEBOOKS if "@main" in p.read_text()]
    assert "@main" not in src and not offenders, f"notebooks that install from @main: {offenders}"


def _run_setup_cell(monkeypatch, capsys, *, gpu: str | None, version: str | None = None) -> str:
    """Execute the generated setup cell here (without the IPython magic) and return what it printed."""
    import torch

    import kadam_edu

    monkeypatch.delenv("KADAM_SCALE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu is not None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: gpu)
    if version is not None:
        monkeypatch.setattr(kadam_edu, "__version__", version)
    code = book.setup_cell_source().replace("%matplotlib inline", "")
    exec(compile(code, "<setup cell>", "exec"), {})
    return capsys.readouterr().out


def test_setup_cell_says_when_there_is_no_gpu(monkeypatch, capsys):
    out = _run_setup_cell(monkeypatch, capsys, gpu=None)
    assert "No GPU in this runtime: this chapter runs at cpu scale" in out
    assert "Change runtime type" in out and "Warning" not in out and "scale: cpu" in out


def test_setup_cell_names_the_gpu(monkeypatch, capsys):
    out = _run_setup_cell(monkeypatch, capsys, gpu="Tesla T4")
    assert "GPU: Tesla T4" in out and "No GPU" not in out


def test_setup_cell_warns_when_the_installed_version_is_not_the_release(monkeypatch, capsys):
    out = _run_setup_cell(monkeypatch, capsys, gpu=None, version="0.0.1")
    assert "Warning" in out and "0.0.1" in out and book.release() in out


def test_which_notebooks_train():
    """Every chapter trains (experiments at SCALE); the assignments' tiny CPU toys do not ask for a GPU."""
    training = {p.stem for p in NOTEBOOKS if book.trains(_load(p))}
    assert training == TRAINING_CHAPTERS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_training_notebooks_open_on_a_colab_gpu(path):
    meta = _load(path)["metadata"]
    assert meta.get("kernelspec", {}).get("name") == "python3" and "language_info" in meta
    if book.trains(_load(path)):
        assert meta.get("accelerator") == "GPU" and meta.get("colab") == COLAB_GPU, (
            f"{path.name} trains but its metadata does not ask Colab for a T4 GPU; run `python tools/book.py sync`")
    else:
        assert "accelerator" not in meta and "gpuType" not in meta.get("colab", {}), (
            f"{path.name} does not train but asks Colab for a GPU; run `python tools/book.py sync`")


def _notebook(code: str, metadata: dict) -> dict:
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# T"},
                      {"cell_type": "code", "metadata": {}, "source": "setup", "outputs": [], "execution_count": None},
                      {"cell_type": "code", "metadata": {}, "source": code, "outputs": [], "execution_count": None}],
            "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def test_sync_writes_and_removes_the_gpu_metadata():
    kernel = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
              "language_info": {"name": "python"}}
    trains = book.synced(_notebook('res = experiments.reproduce("fig7", scale=SCALE)\n'
                                   "from kadam_edu import experiments", dict(kernel)))
    assert trains["metadata"] == {**kernel, "accelerator": "GPU", "colab": COLAB_GPU}
    stale = {**kernel, "accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": [{"x": 1}], "name": "a.ipynb"}}
    assert book.synced(_notebook("from kadam_edu import experiments", stale))["metadata"]["colab"] == COLAB_GPU
    assert book.synced(_notebook("x = 1  # no experiments here", stale))["metadata"] == kernel


def test_check_fails_when_a_training_notebook_lacks_the_gpu_metadata(tmp_path, monkeypatch, capsys):
    nb = book.synced(_notebook("from kadam_edu import experiments", {"kernelspec": {"name": "python3"}}))
    path = tmp_path / "chx.ipynb"
    path.write_text(book._dump(nb))
    monkeypatch.setattr(book, "notebooks", lambda: [path])
    assert book.main(["check"]) == 0
    del nb["metadata"]["accelerator"]
    path.write_text(book._dump(nb))
    assert book.main(["check"]) == 1 and "chx.ipynb" in capsys.readouterr().out


def test_jupyter_book_accepts_the_config():
    """The extra repository.release key passes Jupyter Book's config validation."""
    pytest.importorskip("jupyter_book")
    import yaml
    from jupyter_book.config import validate_yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["release"] == book.release()
    assert validate_yaml(config, raise_on_errors=True) is None


# Issue 14, "Reading the pages": code fits the column; setup and import cells are collapsed on the page.
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_code_lines_fit_the_page(path):
    long = book.long_code_lines(_load(path))
    assert not long, (f"{path.name}: {len(long)} code lines longer than {book.CODE_WIDTH} characters, e.g. "
                      f"cell {long[0][0]}: {long[0][1]!r}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_setup_and_import_cells_are_collapsed_on_the_page(path):
    nb = _load(path)
    setup = book.setup_cell_index(nb)
    want = [setup] + [i for i, c in enumerate(nb["cells"]) if i > setup and book.imports_only(c)]
    bare = [i for i in want if book.COLLAPSED_TAG not in nb["cells"][i].get("metadata", {}).get("tags", [])]
    assert not bare, f"{path.name}: cells {bare} should carry {book.COLLAPSED_TAG!r}; run `python tools/book.py sync`"


@pytest.mark.parametrize("source, expected", [
    ("import numpy as np\nfrom kadam_edu import bounds", True),
    ("# the tools\nimport math\n\nimport torch  # tensors", True),
    ("import numpy as np\nx = np.zeros(3)", False),
    ("%matplotlib inline\nimport numpy as np", True),
    ("%matplotlib inline", False),
    ("!pip install kadam-edu\nimport kadam_edu", False),
    ("# only a comment", False),
    ("", False),
])
def test_imports_only(source, expected):
    assert book.imports_only({"cell_type": "code", "source": source}) is expected
    assert book.imports_only({"cell_type": "markdown", "source": source}) is False


def test_the_setup_cell_fits_the_page():
    assert max(map(len, book.setup_cell_source().splitlines())) <= book.CODE_WIDTH
