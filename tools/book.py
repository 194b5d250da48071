"""Book maintenance: the shared setup cell, the notebooks listed in the toc, output stripping.

    python tools/book.py sync     # write the setup cell into every notebook and strip outputs
    python tools/book.py check    # exit 1 if any notebook differs from what `sync` would write

`_config.yml`'s `repository.url` and `repository.release` (the git tag of the kadam_edu the book
documents) are the one place the repository address and release are written by hand; the setup cell
that every chapter starts with is generated from them here, and a test (tests/test_book.py) checks
that every notebook carries exactly this cell. Notebooks that train also get Colab's metadata for a
T4 GPU runtime, so the launch button opens them on a GPU.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP_TAG = "kadam-setup"
# MyST-NB's tag for a code cell whose input the HTML page shows collapsed (the notebook keeps it):
# the setup cell and the cells that only import.
COLLAPSED_TAG = "hide-input"
# The longest code line the page's column shows without cutting it.
CODE_WIDTH = 88
# Colab's notebook metadata for a GPU runtime (what Colab itself saves after "Change runtime type").
COLAB_GPU = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
# A notebook trains when it imports the library's experiments (they train models at SCALE on
# pick_device()) or puts work on the device itself; the assignments' toys run on the CPU at every scale.
TRAINS = re.compile(r"^[ \t]*(?:from|import)[ \t]+kadam_edu\.experiments\b"
                    r"|^[ \t]*from[ \t]+kadam_edu[ \t]+import[ \t].*\bexperiments\b|\bpick_device\(", re.M)


def _config_value(key: str, section: str = "repository") -> str:
    """Read `section: key:` from _config.yml without a YAML dependency (it is a flat mapping)."""
    text = (ROOT / "_config.yml").read_text()
    block = re.search(rf"^{section}:\n((?:[ \t]+.*\n)+)", text, re.M)
    if block is None:
        raise KeyError(f"_config.yml has no '{section}:' section")
    value = re.search(rf"^[ \t]+{key}:[ \t]*(\S+)", block.group(1), re.M)
    if value is None:
        raise KeyError(f"_config.yml has no '{section}.{key}'")
    return value.group(1).strip("\"'")


def repository_url() -> str:
    return _config_value("url")


def release() -> str:
    """The git tag of the kadam_edu release the book documents ("v" + the package version)."""
    return _config_value("release")


def setup_cell_source() -> str:
    """The first code cell of every notebook: install the book's release of kadam_edu when missing
    (Colab), warn when another version is installed, say whether there is a GPU, pick the scale."""
    return "\n".join([
        "# Setup (the same in every notebook): install the book's release of kadam_edu",
        "# when missing, as on Colab, then pick the scale from the hardware;",
        "# KADAM_SCALE overrides.",
        "import importlib.util, subprocess, sys",
        f"RELEASE = \"{release()}\"  # the kadam_edu release this book documents",
        "if importlib.util.find_spec(\"kadam_edu\") is None:",
        f"    PACKAGE = f\"kadam-edu @ git+{repository_url()}@{{RELEASE}}\"",
        "    pip = [sys.executable, \"-m\", \"pip\", \"install\", \"-q\", PACKAGE]",
        "    subprocess.run(pip, check=True)",
        "import kadam_edu",
        "import torch",
        "from kadam_edu.scale import describe, resolve_scale",
        "",
        "%matplotlib inline",
        "SCALE = resolve_scale(\"auto\")",
        "if kadam_edu.__version__ != RELEASE.removeprefix(\"v\"):",
        "    print(f\"Warning: kadam_edu {kadam_edu.__version__} is installed, but this book \"",
        "          f\"documents {RELEASE}: the text may not match what you see.\")",
        "if torch.cuda.is_available():",
        "    print(\"GPU:\", torch.cuda.get_device_name())",
        "else:",
        "    print(f\"No GPU in this runtime: this chapter runs at {SCALE} scale \"",
        "          \"(in Colab: Runtime -> Change runtime type -> T4 GPU)\")",
        "print(describe(SCALE))",
    ])


# The book students read lists the assignments' student versions; `make book SOLUTIONS=1` builds with
# the second toc, which adds the instructors' masters (solutions and tests, book/assignments/masters/).
TOCS = ("_toc.yml", "_toc_solutions.yml")


def toc_files(toc: str = "_toc.yml") -> list[Path]:
    """Every file ``toc`` names (root, chapters, sections), as paths relative to ROOT."""
    text = (ROOT / toc).read_text()
    names = re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*(\S+)", text, re.M)
    out = []
    for name in names:
        hits = [p for p in (ROOT / (name + ext) for ext in ("", ".md", ".ipynb")) if p.is_file()]
        out.append(hits[0].relative_to(ROOT) if hits else Path(name))
    return out


def book_files() -> list[Path]:
    """Every page on disk under book/ (not checkpoints or build output)."""
    found = []
    for p in sorted((ROOT / "book").rglob("*")):
        if p.suffix in (".md", ".ipynb") and not any(part.startswith((".", "_")) for part in p.relative_to(ROOT).parts):
            found.append(p.relative_to(ROOT))
    return found


def notebooks() -> list[Path]:
    return [ROOT / p for p in book_files() if p.suffix == ".ipynb"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def setup_cell_index(nb: dict) -> int:
    """Index of the first code cell (the setup cell)."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            return i
    raise ValueError("notebook has no code cell")


def trains(nb: dict) -> bool:
    """Whether a code cell after the setup cell trains (see TRAINS): such notebooks open on a Colab GPU."""
    i = setup_cell_index(nb)
    return any(c["cell_type"] == "code" and TRAINS.search(_source(c)) for c in nb["cells"][i + 1:])


def imports_only(cell: dict) -> bool:
    """Whether a code cell does nothing but import (comments, blank lines and IPython line magics
    such as ``%matplotlib inline`` aside)."""
    if cell["cell_type"] != "code":
        return False
    lines = [ln for ln in _source(cell).splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "%"))]
    if not lines or any(ln.lstrip().startswith("!") for ln in lines):
        return False
    try:
        body = ast.parse("\n".join(lines)).body
    except SyntaxError:
        return False
    return all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def long_code_lines(nb: dict, width: int = CODE_WIDTH) -> list[tuple[int, str]]:
    """(cell index, line) for every code line longer than ``width`` characters."""
    return [(i, ln) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            for ln in _source(c).splitlines() if len(ln) > width]


def _tag(cell: dict, tag: str) -> None:
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def synced(nb: dict) -> dict:
    """The notebook with the setup cell in place, it and every imports-only cell collapsed on the
    page (COLLAPSED_TAG), no outputs and no execution counts, and Colab's GPU runtime metadata
    exactly when it trains."""
    nb = json.loads(json.dumps(nb))
    meta = nb.setdefault("metadata", {})
    for key in COLAB_GPU:
        meta.pop(key, None)
    if trains(nb):
        meta.update(json.loads(json.dumps(COLAB_GPU)))
    i = setup_cell_index(nb)
    cell = nb["cells"][i]
    cell["source"] = setup_cell_source()
    _tag(cell, SETUP_TAG)
    _tag(cell, COLLAPSED_TAG)
    for cell in nb["cells"][i + 1:]:
        if imports_only(cell):
            _tag(cell, COLLAPSED_TAG)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("sync", "check"):
        print(__doc__)
        return 2
    stale = []
    for path in notebooks():
        nb = json.loads(path.read_text())
        want = _dump(synced(nb))
        if path.read_text() != want:
            stale.append(os.path.relpath(path, ROOT))
            if argv[0] == "sync":
                path.write_text(want)
    verb = "rewrote" if argv[0] == "sync" else "out of sync"
    for p in stale:
        print(f"{verb}: {p}")
    return 1 if (stale and argv[0] == "check") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
