"""Make the built book readable without internet: vendor MathJax 3, RequireJS and the widget manager.

    python tools/offline.py [_build/html]

Jupyter Book 1 loads MathJax, RequireJS and @jupyter-widgets/html-manager from public CDNs.
This script fetches the same versions from the npm registry (`npm pack`, cached in `.vendor/`
at the repository root, outside `_static/` which Jupyter Book would inject into every page),
copies them to `<html>/_vendor/`, and points every page at the local copies. Pages that used
the CDN keep working exactly as before, only from local files. Without npm or a registry, it
says so and leaves the CDN links in place (exit status 0, so `make book` still succeeds).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".vendor"

# npm package -> (version, folder inside the package to copy, CDN URL pattern, file inside that folder)
PACKAGES = {
    "mathjax": ("3.2.2", "es5", r"https://cdn\.jsdelivr\.net/npm/mathjax@3[^\"']*/es5/([\w.-]+\.js)", None),
    "@jupyter-widgets/html-manager": (
        "1.0.6", "dist", r"https://cdn\.jsdelivr\.net/npm/@jupyter-widgets/html-manager@[\d.^~]+/dist/([\w.-]+\.js)", None),
    "requirejs": ("2.3.4", ".", r"https://cdnjs\.cloudflare\.com/ajax/libs/require\.js/[\d.]+/require(?:\.min)?\.js", "require.js"),
}


def _local_name(package: str) -> str:
    return package.replace("@", "").replace("/", "-")


def fetch(package: str, version: str) -> Path:
    """Unpacked npm package in the cache (fetched with `npm pack` the first time)."""
    target = CACHE / f"{_local_name(package)}-{version}"
    if (target / "package").is_dir():
        return target / "package"
    CACHE.mkdir(exist_ok=True)
    if shutil.which("npm") is None:
        raise RuntimeError("npm is not installed")
    out = subprocess.run(["npm", "pack", "--silent", f"{package}@{version}"], cwd=CACHE,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"npm pack {package}@{version} failed: {out.stderr.strip()[-300:]}")
    tgz = CACHE / out.stdout.strip().splitlines()[-1]
    target.mkdir(exist_ok=True)
    with tarfile.open(tgz) as tar:
        tar.extractall(target, filter="data")
    tgz.unlink()
    return target / "package"


def vendor(html_dir: Path) -> int:
    """Copy the packages into html_dir/_vendor and rewrite the pages; return the number of pages changed."""
    vendor_dir = html_dir / "_vendor"
    rules = []
    for package, (version, folder, pattern, fixed_file) in PACKAGES.items():
        src = fetch(package, version) / folder
        dest = vendor_dir / _local_name(package)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.map", "*.md", "bin", "docs", "tests"))
        rules.append((re.compile(pattern), dest.relative_to(html_dir), fixed_file))
    changed = 0
    for page in html_dir.rglob("*.html"):
        if vendor_dir in page.parents:
            continue
        text = page.read_text(encoding="utf-8")
        up = "../" * (len(page.relative_to(html_dir).parts) - 1)
        new = text
        for regex, rel, fixed_file in rules:
            new = regex.sub(lambda m: f"{up}{rel.as_posix()}/{fixed_file or m.group(1)}", new)
        # Integrity hashes belong to the CDN's minified files, and a crossorigin request from a
        # file:// page is refused, so local copies load without either attribute.
        new = re.sub(r'<script\b[^>]*_vendor/[^>]*>', lambda m: re.sub(r'\s+(?:integrity|crossorigin)="[^"]*"', "", m.group(0)), new)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed


def main(argv: list[str]) -> int:
    html_dir = Path(argv[0]) if argv else ROOT / "_build" / "html"
    if not html_dir.is_dir():
        print(f"offline: no built book at {html_dir}; run `make book` first", file=sys.stderr)
        return 1
    try:
        changed = vendor(html_dir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        print(f"offline: kept the CDN links ({err}); the pages need internet for maths and widgets")
        return 0
    print(f"offline: MathJax, RequireJS and the widget manager vendored into {html_dir / '_vendor'} ({changed} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
