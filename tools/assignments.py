"""The course assignments as otter-grader masters: build the autograders, keep the student notebooks in sync.

    python tools/assignments.py build [OUT]   # `make assignments`: otter assign every master into OUT/<name>/
    python tools/assignments.py sync          # write the book's student notebooks from the masters
    python tools/assignments.py check         # exit 1 if a student notebook differs from what `sync` writes

One master notebook per assignment (book/assignments/masters/<name>.ipynb) holds the teaching text,
the solutions and the tests (otter's `# ASSIGNMENT CONFIG`, `# BEGIN QUESTION`, `# BEGIN SOLUTION`,
`# BEGIN TESTS` cells). `otter assign` turns it into `student/` (the notebook students get, and the
public tests) and `autograder/` (the solution, every test and the autograder zip for `otter run` or
Gradescope). The book shows the student notebook, committed as book/assignments/<name>.ipynb: it is
exactly otter's student version, passed through tools/book.py's sync (no outputs, collapsed setup
cell), and tests/test_assignments_otter.py checks that it cannot drift from its master.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import book  # noqa: E402  (tools/book.py)

MASTERS = ROOT / "book" / "assignments" / "masters"
STUDENTS = ROOT / "book" / "assignments"
OUT = ROOT / "_build" / "assignments"


def masters() -> list[Path]:
    """Every master notebook, in assignment order."""
    return sorted(MASTERS.glob("*.ipynb"))


def otter() -> str | None:
    """The `otter` command (otter-grader, the `course` extra), or None when it is not installed."""
    return shutil.which("otter")


def assign(master: Path, out: Path, *, run_tests: bool = True) -> Path:
    """Run `otter assign` on ``master`` into ``out`` (replaced if present): ``out/student`` and
    ``out/autograder``. ``run_tests``: otter also runs every test against the solution and fails if
    one does not pass. Returns ``out``. Raises FileNotFoundError without otter, RuntimeError when
    otter assign fails (its output in the message)."""
    master = Path(master)
    if master.suffix != ".ipynb" or not master.is_file():
        raise ValueError(f"master must be an existing .ipynb file; got {str(master)!r}")
    cmd = otter()
    if cmd is None:
        raise FileNotFoundError("otter-grader is not installed: pip install -e '.[course]'")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [cmd, "assign", str(master), str(out)] + ([] if run_tests else ["--no-run-tests"])
    done = subprocess.run(args, capture_output=True, text=True, cwd=master.parent)
    if done.returncode != 0:
        raise RuntimeError(f"otter assign {master.name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return out


def autograder_zip(out: Path) -> Path:
    """The autograder zip that `otter assign` wrote into ``out/autograder`` (one per run)."""
    zips = sorted((Path(out) / "autograder").glob("*-autograder_*.zip"))
    if len(zips) != 1:
        raise FileNotFoundError(f"expected one autograder zip in {Path(out) / 'autograder'}, found {zips}")
    return zips[0]


def student_version(master: Path, *, out: Path | None = None) -> dict:
    """The book's student notebook for ``master``: otter's student version, synced like every book
    notebook (tools/book.py). ``out``: an existing `otter assign` output to read instead of running it."""
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            return student_version(master, out=assign(master, Path(tmp) / "out", run_tests=False))
    nb = json.loads((Path(out) / "student" / Path(master).name).read_text())
    for cell in nb["cells"]:
        cell.pop("id", None)  # otter draws new cell ids on every run
    return book.synced(nb)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("build", "sync", "check") or len(argv) > (2 if argv[0] == "build" else 1):
        print(__doc__)
        return 2
    if otter() is None:
        print("otter-grader is not installed: pip install -e '.[course]'")
        return 1
    if argv[0] == "build":
        root = Path(argv[1]) if len(argv) > 1 else OUT
        for master in masters():
            out = assign(master, root.resolve() / master.stem)
            print(f"{master.stem}: {out / 'student'}, {autograder_zip(out)}")
        return 0
    stale = []
    for master in masters():
        path = STUDENTS / master.name
        want = book._dump(student_version(master))
        if not path.is_file() or path.read_text() != want:
            stale.append(os.path.relpath(path, ROOT))
            if argv[0] == "sync":
                _write(path, want)
    verb = "rewrote" if argv[0] == "sync" else "out of sync with its master"
    for p in stale:
        print(f"{verb}: {p}")
    return 1 if (stale and argv[0] == "check") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
