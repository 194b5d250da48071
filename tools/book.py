"""Book maintenance: the shared setup cell, the notebooks listed in the toc, output stripping.

    python tools/book.py sync     # write the setup cell into every notebook and strip outputs
    python tools/book.py check    # exit 1 if any notebook differs from what `sync` would write

`_config.yml`'s `repository.url` is the one place the repository address is written by hand;
the setup cell that every chapter starts with is generated from it here, and a test
(tests/test_book.py) checks that every notebook carries exactly this cell.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP_TAG = "kadam-setup"


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


def setup_cell_source() -> str:
    """The first code cell of every notebook: install kadam_edu when missing (Colab), pick the scale."""
    url, branch = repository_url(), _config_value("branch")
    return "\n".join([
        "# Setup (the same in every notebook): install kadam_edu when missing, as on Colab,",
        "# then pick the scale: \"paper\" on a GPU, \"cpu\" otherwise; KADAM_SCALE overrides.",
        "import importlib.util, subprocess, sys",
        "if importlib.util.find_spec(\"kadam_edu\") is None:",
        f"    PACKAGE = \"kadam-edu @ git+{url}@{branch}\"",
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", PACKAGE], check=True)",
        "import kadam_edu",
        "from kadam_edu.scale import describe, resolve_scale",
        "",
        "%matplotlib inline",
        "SCALE = resolve_scale(\"auto\")",
        "print(describe(SCALE))",
    ])


def toc_files() -> list[Path]:
    """Every file the toc names (root, chapters, sections), as paths relative to ROOT."""
    text = (ROOT / "_toc.yml").read_text()
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


def synced(nb: dict) -> dict:
    """The notebook with the setup cell in place, no outputs and no execution counts."""
    nb = json.loads(json.dumps(nb))
    i = setup_cell_index(nb)
    cell = nb["cells"][i]
    cell["source"] = setup_cell_source()
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if SETUP_TAG not in tags:
        tags.append(SETUP_TAG)
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
            stale.append(path.relative_to(ROOT))
            if argv[0] == "sync":
                path.write_text(want)
    verb = "rewrote" if argv[0] == "sync" else "out of sync"
    for p in stale:
        print(f"{verb}: {p}")
    return 1 if (stale and argv[0] == "check") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
