"""Issue 16: the assignments as otter-grader masters. `otter assign` builds a student notebook and an
autograder from each master; `otter run` with that autograder gives the solution full marks, the blank
student notebook less, and a known wrong answer less with the self-check's explanation as feedback.
The book's student notebooks are exactly otter's student versions (they cannot drift from the masters).

Needs otter-grader (the `course` extra): skipped, saying why, without it; under CI it fails instead."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402  (tools/assignments.py)
import book  # noqa: E402  (tools/book.py)
from check_pages import in_ci  # noqa: E402  (tools/check_pages.py)

MASTERS = assignments.masters()
NAMES = [m.stem for m in MASTERS]

# A known wrong answer per assignment (appended to the answer's cell of the solution notebook, so that
# only this answer is wrong) and a phrase of the self-check's explanation its feedback must carry.
WRONG = {
    "a1_discrete_bound": ("def discrete_bound(", "def discrete_bound(n, beta, gamma):\n"
                          "    return _right_bound(n, gamma, beta)  # beta and gamma swapped\n",
                          "_right_bound = discrete_bound\n", "Notation trap"),
    "a2_adaptive_normalization": ("def adam(", "def adam(params, *, lr, beta, gamma):\n"
                                  "    return _right_adam(params, lr=lr, beta=gamma, gamma=beta)  # swapped\n",
                                  "_right_adam = adam\n", "Notation trap"),
    "a3_stability_boundary": ("def log_slope(", "def log_slope(max_update, start, stop):\n"
                              "    return _right_slope(max_update, start, stop) / math.log(10)  # log10\n",
                              "_right_slope = log_slope\n", "natural logarithm"),
}


def _need_otter():
    if assignments.otter() is None:
        if in_ci():
            pytest.fail("otter-grader is not installed, and CI must run the autograders: pip install -e '.[course]'")
        pytest.skip("otter-grader is not installed (pip install -e '.[course]'); the autograders are not checked")


@pytest.fixture(scope="module", params=MASTERS, ids=NAMES)
def built(request, tmp_path_factory):
    """(master, `otter assign` output) for one assignment, at smoke scale."""
    _need_otter()
    os.environ.setdefault("KADAM_SCALE", "smoke")
    master = request.param
    return master, assignments.assign(master, tmp_path_factory.mktemp(master.stem) / "out", run_tests=False)


def _otter_run(out: Path, notebook: dict, tmp: Path) -> tuple[float, float, str]:
    """Grade ``notebook`` with the autograder zip in ``out``: (score, max score, feedback)."""
    tmp.mkdir(parents=True)
    sub = tmp / "submission.ipynb"
    sub.write_text(json.dumps(notebook))
    res = tmp / "results"
    res.mkdir()
    env = dict(os.environ, KADAM_SCALE="smoke", KADAM_PROGRESS="0")
    done = subprocess.run([assignments.otter(), "run", "-a", str(assignments.autograder_zip(out)), "-o", str(res),
                           str(sub)], capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert done.returncode == 0, f"otter run failed:\n{done.stdout}\n{done.stderr}"
    tests = [t for t in json.loads((res / "results.json").read_text())["tests"] if t.get("max_score")]
    assert tests, "the autograder ran no scored test"
    feedback = "\n".join(t.get("output", "") for t in tests)
    return sum(t["score"] for t in tests), sum(t["max_score"] for t in tests), feedback


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _solution(master: Path, out: Path) -> dict:
    return _load(out / "autograder" / master.name)


def _with_wrong_answer(master: Path, out: Path) -> dict:
    nb = _solution(master, out)
    marker, wrong, keep, _ = WRONG[master.stem]
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and marker in book._source(c)]
    assert len(cells) == 1, f"expected one cell defining {marker!r} in {master.name}"
    cells[0]["source"] = book._source(cells[0]) + "\n\n" + keep + "\n\n" + wrong
    return nb


def test_solution_full_marks_blank_and_wrong_less(built, tmp_path):
    master, out = built
    full, most, _ = _otter_run(out, _solution(master, out), tmp_path / "solution")
    blank, most_blank, _ = _otter_run(out, _load(out / "student" / master.name), tmp_path / "blank")
    wrong, most_wrong, feedback = _otter_run(out, _with_wrong_answer(master, out), tmp_path / "wrong")
    print(f"{master.stem}: solution {full}/{most}, blank {blank}/{most_blank}, wrong {wrong}/{most_wrong}")
    assert most == most_blank == most_wrong > 0
    assert full == most, f"the solution scored {full} of {most}"
    assert blank < most and wrong < most, (blank, wrong, most)
    assert wrong > blank, "one wrong answer should cost less than an empty notebook"
    phrase = WRONG[master.stem][3]
    assert phrase in feedback, f"the feedback does not carry the self-check's explanation ({phrase!r}):\n{feedback}"


def test_the_hidden_tests_are_not_given_to_students(built):
    master, out = built
    public = "\n".join(p.read_text() for p in (out / "student" / "tests").glob("*.py"))
    every = "\n".join(p.read_text() for p in (out / "autograder" / "tests").glob("*.py"))
    assert "seed=" not in public and "'hidden': False" in public
    assert "'hidden': True" in every and "seed=" in every


def test_student_notebook_is_what_otter_assign_makes(built):
    """The book's student notebook equals otter's student version of its master (no drift)."""
    master, out = built
    committed = _load(assignments.STUDENTS / master.name)
    want = assignments.student_version(master, out=out)
    assert committed["cells"] == want["cells"], (
        f"book/assignments/{master.name} differs from `otter assign` of its master; run "
        "`python tools/assignments.py sync`")
    assert committed["metadata"] == want["metadata"]


def test_student_notebook_has_no_solution(built):
    master, out = built
    student = "\n".join(book._source(c) for c in _load(assignments.STUDENTS / master.name)["cells"])
    assert "BEGIN SOLUTION" not in student and "Model answer" not in student and "BEGIN TESTS" not in student
    assert "return None  # your code here" in student


def test_every_assignment_has_a_master():
    students = sorted(p.stem for p in assignments.STUDENTS.glob("a*.ipynb"))
    assert students == NAMES and len(NAMES) == 3


def test_tocs_show_students_and_solutions_only_on_request():
    default = {str(p) for p in book.toc_files()}
    solutions = {str(p) for p in book.toc_files("_toc_solutions.yml")}
    masters = {str(m.relative_to(ROOT)) for m in MASTERS}
    students = {f"book/assignments/{n}.ipynb" for n in NAMES}
    assert students <= default and not masters & default, "the book shows the student versions only"
    assert solutions == default | masters, "_toc_solutions.yml is _toc.yml plus the masters"


def test_check_reports_a_drifted_student_notebook(tmp_path, monkeypatch, capsys):
    _need_otter()
    master = MASTERS[0]
    monkeypatch.setattr(assignments, "STUDENTS", tmp_path)
    monkeypatch.setattr(assignments, "masters", lambda: [master])
    (tmp_path / master.name).write_text(book._dump(assignments.student_version(master)))
    assert assignments.main(["check"]) == 0
    nb = _load(tmp_path / master.name)
    nb["cells"][0]["source"] = "# Assignment 1, edited by hand"
    (tmp_path / master.name).write_text(book._dump(nb))
    assert assignments.main(["check"]) == 1 and master.name in capsys.readouterr().out
