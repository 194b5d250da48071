"""Make the built book readable without internet: vendor MathJax 3, RequireJS, the widget manager and Vega.

    python tools/offline.py [_build/html]

Jupyter Book 1 loads MathJax, RequireJS and @jupyter-widgets/html-manager from public CDNs, and
every live Altair chart on a page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net at the
versions Altair asks for (`vega@6`, `vega-lite@6.4.1`, ...: both the RequireJS `paths` it writes and
the `<script src>` of a saved chart). This script fetches the same versions from the npm registry
(`npm pack`, cached in `.vendor/` at the repository root, outside `_static/` which Jupyter Book would
inject into every page), copies them to `<html>/_vendor/`, and points every page at the local
copies. Vega is fetched only when a page draws a chart; for a version range such as `vega@6` npm
picks the newest match, as the CDN does. Pages that used the CDN keep working exactly as before,
only from local files. Without npm or a registry, it says so and leaves the CDN links in place
(exit status 0, so `make book` still succeeds).
"""

from __future__ import annotations

import json
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
# The libraries a live Altair chart loads, as written in the page: `https://cdn.jsdelivr.net/npm/vega@6`,
# optionally followed by `?noext` (kept: it stops RequireJS from appending `.js`). `vega-lib` (the
# old name of vega, listed in Altair's RequireJS paths but never loaded) points at the page's vega.
VEGA_URL = re.compile(r"https://cdn\.jsdelivr\.net/npm/(vega|vega-lite|vega-embed|vega-lib)"
                      r"(?:@([\w.^~-]+))?(?=[?\"'])")


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


def entry_file(package_dir: Path) -> str:
    """The file the CDN serves for a bare `npm/<package>@<version>` address (package.json's `jsdelivr`)."""
    meta = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    entry = meta.get("jsdelivr") or meta.get("unpkg") or meta.get("main")
    if not entry:
        raise RuntimeError(f"{meta.get('name', package_dir)} names no browser build in its package.json")
    return entry.removeprefix("./")


def vega_requests(pages: list[Path]) -> set[tuple[str, str]]:
    """(package, version) pairs of vega, vega-lite and vega-embed that the pages load from the CDN."""
    wanted = set()
    for page in pages:
        for name, version in VEGA_URL.findall(page.read_text(encoding="utf-8")):
            if name != "vega-lib" and version:  # an address without a version stays (check_pages flags it)
                wanted.add((name, version))
    return wanted


def vendor_vega(vendor_dir: Path, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Copy each requested vega library's browser build into vendor_dir; map (package, version) to its
    path relative to vendor_dir's parent (one file per library, the one the CDN would have served)."""
    files = {}
    for package, version in sorted(wanted):
        src = fetch(package, version)
        entry = entry_file(src)
        dest = vendor_dir / f"{package}-{version}" / Path(entry).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / entry, dest)
        files[(package, version)] = dest.relative_to(vendor_dir.parent).as_posix()
    return files


def _rewrite_vega(text: str, files: dict[tuple[str, str], str], up: str) -> str:
    """Point the page's vega CDN addresses at the vendored files (`up` leads from the page to the root)."""
    versions = dict(VEGA_URL.findall(text))

    def local(m: re.Match) -> str:
        name, version = m.group(1), m.group(2)
        if name == "vega-lib":
            name, version = "vega", versions.get("vega")
        rel = files.get((name, version))
        return f"{up}{rel}" if rel else m.group(0)

    return VEGA_URL.sub(local, text)


def vendor(html_dir: Path) -> int:
    """Copy the packages into html_dir/_vendor and rewrite the pages; return the number of pages changed."""
    vendor_dir = html_dir / "_vendor"
    pages = [p for p in html_dir.rglob("*.html") if vendor_dir not in p.parents]
    rules = []
    for package, (version, folder, pattern, fixed_file) in PACKAGES.items():
        src = fetch(package, version) / folder
        dest = vendor_dir / _local_name(package)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.map", "*.md", "bin", "docs", "tests"))
        rules.append((re.compile(pattern), dest.relative_to(html_dir), fixed_file))
    vega_files = vendor_vega(vendor_dir, vega_requests(pages))
    changed = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        up = "../" * (len(page.relative_to(html_dir).parts) - 1)
        new = text
        for regex, rel, fixed_file in rules:
            new = regex.sub(lambda m: f"{up}{rel.as_posix()}/{fixed_file or m.group(1)}", new)
        new = _rewrite_vega(new, vega_files, up)
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
        print(f"offline: kept the CDN links ({err}); the pages need internet for maths, widgets and charts")
        return 0
    print(f"offline: MathJax, RequireJS, the widget manager and Vega vendored into {html_dir / '_vendor'} ({changed} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
