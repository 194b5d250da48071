"""Open every built page in headless Chromium, offline, and check that it shows what a reader needs.

    python tools/check_pages.py [_build/html] [--screenshots DIR]

For each page in the toc: the maths is typeset by MathJax (``mjx-container`` elements, no
``mjx-merror``), every chapter shows at least one figure, a page that saved widget state
renders its widgets, and every notebook page links to itself in Colab. The network is cut (every host name resolves to nothing), so a pass also
means the page needs no CDN: run `python tools/offline.py` after the build first.
Needs Chromium (Debian: `apt-get install chromium`); without it, says so and exits 0, except
in CI (environment CI=true or 1, as .ci/run sets), where a page check that cannot run fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--virtual-time-budget=20000", "--window-size=1200,2400"]


def browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def dom(exe: str, page: Path) -> str:
    out = subprocess.run([exe, *FLAGS, "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=180)
    return out.stdout


def colab_link(page: Path) -> str:
    """The launch button's address for a notebook page, built from _config.yml's repository."""
    repo = book.repository_url().removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{repo}/blob/{book._config_value('branch')}/{page.as_posix()}"


def inspect(html: str, rendered: str, *, chapter: bool, colab: str | None = None) -> tuple[dict, list[str]]:
    """Counts of what the reader sees, and the problems found."""
    main = rendered.split('<main', 1)[-1]
    seen = {
        "maths": len(re.findall(r"<mjx-container", main)),
        "maths errors": len(re.findall(r"<mjx-merror", main)),
        "figures": len(re.findall(r"<img\b[^>]*src=\"[^\"]*\.(?:png|svg|jpg)", main)) + main.count('src="data:image/png'),
        "widgets": len(re.findall(r'class="[^"]*\bjupyter-widgets\b(?![-\w])', main)),
    }
    problems = []
    has_maths = bool(re.search(r'class="math|\\\(|\\\[', html))
    if has_maths and seen["maths"] == 0:
        problems.append("maths is not typeset (is MathJax loading?)")
    if seen["maths errors"]:
        problems.append(f"{seen['maths errors']} MathJax errors")
    if chapter and seen["figures"] == 0:
        problems.append("no figure on a chapter page")
    if "application/vnd.jupyter.widget-state+json" in html and seen["widgets"] == 0:
        problems.append("saved widget state but no widget rendered (is the widget manager loading?)")
    if colab is not None and colab not in html:
        problems.append(f"no Colab launch link to {colab}")
    if re.search(r"cdn\.jsdelivr\.net/npm/mathjax|cdnjs\.cloudflare\.com/ajax/libs/require", html):
        problems.append("still loads MathJax/RequireJS from a CDN (run tools/offline.py)")
    return seen, problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", nargs="?", default=str(book.ROOT / "_build" / "html"))
    ap.add_argument("--screenshots", metavar="DIR", help="also save a PNG of each page here")
    args = ap.parse_args(argv)
    exe = browser()
    if exe is None:
        if in_ci():
            print("check_pages: FAIL: no Chromium in CI (CI=true); install it (apt-get install chromium)")
            return 1
        print("check_pages: no Chromium here (apt-get install chromium); pages not checked")
        return 0
    root = Path(args.html)
    failed = 0
    for page in book.toc_files():
        html_file = root / page.with_suffix(".html")
        if not html_file.is_file():
            print(f"FAIL {page}: not built ({html_file} missing)")
            failed += 1
            continue
        chapter = page.parent.name == "book" and page.stem.startswith("ch")
        seen, problems = inspect(html_file.read_text(encoding="utf-8"), dom(exe, html_file), chapter=chapter,
                                 colab=colab_link(page) if page.suffix == ".ipynb" else None)
        status = "FAIL" if problems else "ok  "
        counts = ", ".join(f"{k} {v}" for k, v in seen.items())
        print(f"{status} {page}: {counts}" + (f"  <- {'; '.join(problems)}" if problems else ""))
        failed += bool(problems)
        if args.screenshots:
            Path(args.screenshots).mkdir(parents=True, exist_ok=True)
            png = Path(args.screenshots) / (page.as_posix().replace("/", "_") + ".png")
            subprocess.run([exe, *FLAGS, f"--screenshot={png.resolve()}", html_file.resolve().as_uri()],
                           capture_output=True, timeout=180)
    print(f"pages: {len(book.toc_files()) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
