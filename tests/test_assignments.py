"""The course assignments as a package (kadam_edu.assignments): every public name keeps its import
path, and the notebooks in book/assignments/ as files (nothing executed). The checks themselves are
tested per module: tests/test_assignments_engine.py, _discrete_bound.py, _adaptive_normalization.py,
_stability_boundary.py; the sweep in tests/test_experiments_boundary.py, its figure in
tests/test_plots_boundary.py."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kadam_edu import assignments

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the package's names

#: Every public name of kadam_edu.assignments (the notebooks import them from there), by the module that
#: defines it: the checking engine, one module per assignment, the sweep in experiments, its plot in plots.
PUBLIC = {
    "kadam_edu.assignments.engine": ["CheckResult", "NotAnswered"],
    "kadam_edu.assignments.discrete_bound": ["check_discrete_bound", "check_adam_updates", "check_extremal_sequence",
                                             "check_discrete_rate", "gradient_families"],
    "kadam_edu.assignments.adaptive_normalization": ["FunctionalOptimizer", "check_adaptive_normalization",
                                                     "check_rmsprop", "check_adam", "check_kadam"],
    "kadam_edu.assignments.stability_boundary": ["check_make_optimizer", "check_log_slope", "check_classification",
                                                 "check_boundary"],
    "kadam_edu.experiments.boundary": ["RareFeatureProblem", "BoundarySweep", "BOUNDARY_PRESETS", "boundary_settings",
                                       "boundary_sweep"],
    "kadam_edu.plots.boundary": ["plot_boundary"],
}


def test_every_public_name_keeps_its_import_path():
    names = [name for names in PUBLIC.values() for name in names]
    assert sorted(assignments.__all__) == sorted(names)
    for home, names_there in PUBLIC.items():
        module = importlib.import_module(home)
        for name in names_there:
            assert getattr(assignments, name) is getattr(module, name), name
    star = {}
    exec("from kadam_edu.assignments import *", star)
    assert set(names) <= set(star)


def test_importing_the_checks_loads_no_plotting():
    # as before the split: matplotlib is imported when plot_boundary is first used, not with the checks
    code = ("import sys, kadam_edu.assignments as a; assert 'matplotlib' not in sys.modules, 'eager'; "
            "a.plot_boundary; assert 'kadam_edu.plots.boundary' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_one_spelling_normalization():
    assert not hasattr(assignments, "check_adaptive_normalisation")
    files = [*(ROOT / "kadam_edu" / "assignments").glob("*.py"), *(ROOT / "book" / "assignments").iterdir(),
             *(ROOT / "kadam_edu" / part / "boundary.py" for part in ("experiments", "plots")), ROOT / "_toc.yml"]
    for path in filter(Path.is_file, files):
        assert "normalis" not in path.name and "normalis" not in path.read_text().lower(), path


# ------------------------------------------------------------------ the notebooks as files (nothing executed)


PAIRS = ["a1_discrete_bound", "a2_adaptive_normalization", "a3_stability_boundary"]


def _cells(name):
    nb = json.loads((ROOT / "book" / "assignments" / f"{name}.ipynb").read_text())
    return [(c["cell_type"], "".join(c["source"]), c.get("metadata", {}).get("tags", [])) for c in nb["cells"]]


@pytest.mark.parametrize("stem", PAIRS)
def test_masters_hold_every_answer_and_students_none(stem):
    """Each otter master (book/assignments/masters/) has a solution for every code placeholder and a model
    answer for every written task; the student notebook keeps the placeholders and the self-checks."""
    student, master = _cells(stem), _cells(f"masters/{stem}")
    placeholders = [src for kind, src, _ in student if kind == "code" and "return None  # your code here" in src]
    assert placeholders, "student notebooks keep placeholder bodies"
    prompts = [src for kind, src, _ in master if kind == "code" and '""" # BEGIN PROMPT' in src]
    assert len(prompts) == len(placeholders) and all("# BEGIN SOLUTION NO PROMPT" in src for src in prompts)
    checks = [src for kind, src, _ in student if kind == "code" and "assignments.check_" in src]
    assert checks and all(src in {s for k, s, _ in master if k == "code"} for src in checks)
    written = [src for kind, src, _ in student if kind == "markdown" and "*Your answer to" in src]
    models = [src for kind, src, _ in master if kind == "markdown" and src.startswith(":::{admonition} Model answer")]
    assert len(written) == len(models) >= 1 and all(":class: dropdown" in m for m in models)
    assert not any("Model answer" in src for _, src, _ in student)
