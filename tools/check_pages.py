"""Open every built page in headless Chromium, offline, and check that it shows what a reader needs.

    python tools/check_pages.py [_build/html] [--screenshots DIR] [--measure [N]]

For each page in the toc: the maths is typeset by MathJax (``mjx-container`` elements, no
``mjx-merror``), every chapter shows at least one figure, a page that saved widget state
renders its widgets, every notebook page links to itself in Colab, and every live Altair chart
(Vega-Lite through vega-embed) is drawn (an svg or canvas with marks) without JavaScript errors,
and moving each of its sliders (``.vega-bindings input[type=range]``) changes what is drawn.
The pages are served from a local http server and the network is cut: every request to another
host is aborted and counted, and other host names resolve to nothing. So a pass also means the
page needs no CDN: run `python tools/offline.py` after the build first.

``--measure`` prints, for each page with a live chart, what the charts cost a reader: the bytes
of the vendored vega, vega-lite and vega-embed files the page loads (and gzipped, as a server
would send them), the bytes of the charts' inline specs, and the time from navigation start to
the first chart drawn (median of N cold loads, default 5).

Drives Debian's Chromium (`apt-get install chromium`) through the `playwright` package (the test
extra) with `executable_path`: never `playwright install`. Without Chromium or playwright it says
so and exits 0, except in CI (environment CI=true or 1, as .ci/run sets), where it fails.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import os
import re
import shutil
import statistics
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
VIEWPORT = {"width": 1200, "height": 2400}
TIMEOUT_MS = 20_000  # per wait: page load, MathJax, widgets, charts
SLIDER_MS = 5_000  # how long a chart may take to redraw after a slider moves
# A live chart: the container Altair writes (`<div id="altair-viz-...">`), which vega-embed then
# marks `.vega-embed`; either selects it.
CHART = '[id^="altair-viz-"], .vega-embed'
# Errors every page of a Jupyter Book 1 site shows, with or without charts, that change nothing a
# reader sees: (kind, regex on the message, regex on the script or resource address).
KNOWN_ERRORS = [
    # sphinx-thebe writes `const THEBE_JS_URL` in two script blocks of every page.
    ("pageerror", r"Identifier 'THEBE_JS_URL' has already been declared", r""),
    # pydata-sphinx-theme in a fresh profile: no saved light/dark choice yet.
    ("console", r"Got invalid theme mode", r"pydata-sphinx-theme\.js"),
    # The widget manager's bundled icon fonts, looked for beside the page (the widgets still render).
    ("console", r"Failed to load resource", r"@jupyter-widgets/html-manager/dist/"),
    ("console", r"Failed to load resource", r"/favicon\.ico$"),
    # @jupyter-widgets/html-manager 1.0.6 (embed-amd.js) on every page with saved widget state.
    ("pageerror", r"reading 'Queue'", r"embed-amd\.js"),
]

# In the page: what a chart draws, as text that changes when the drawing does (the svg's markup, or
# the canvas's pixels), and how many marks it drew (items of the svg's mark groups, or inked pixels).
DRAWING_JS = """el => {
  const svg = el.querySelector('svg.marks'), canvas = el.querySelector('canvas.marks');
  if (svg) return {kind: 'svg', text: svg.outerHTML, marks: svg.querySelectorAll('.role-mark > *').length};
  if (!canvas || !canvas.width) return {kind: null, text: '', marks: 0};
  const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 0; i < px.length; i += 4)
    if (px[i + 3] && (px[i] < 250 || px[i + 1] < 250 || px[i + 2] < 250)) ink++;
  return {kind: 'canvas', text: canvas.toDataURL(), marks: ink};
}"""
# Move a range input to the other end of its range (or to its minimum from the maximum) the way a
# reader's drag does: set the value, then fire `input` and `change`.
MOVE_JS = """input => {
  const lo = Number(input.min || 0), hi = Number(input.max || 100), v = Number(input.value);
  input.value = String(v === hi ? lo : hi);
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new Event('change', {bubbles: true}));
  return input.value;
}"""
MATHJAX_JS = """async ms => {
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < ms)
    await new Promise(r => setTimeout(r, 100));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
}"""
# Before any page script: note when the first chart's svg or canvas appears (ms since navigation start).
FIRST_CHART_JS = """(() => {
  const seen = () => document.querySelector('.vega-embed svg.marks, .vega-embed canvas.marks');
  new MutationObserver((_, obs) => {
    if (seen()) { window.__firstChartMs = performance.now(); obs.disconnect(); }
  }).observe(document, {childList: true, subtree: true});
})();"""


def browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def playwright():
    """Playwright's sync_playwright, or None when the package is not installed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def colab_link(page: Path) -> str:
    """The launch button's address for a notebook page, built from _config.yml's repository."""
    repo = book.repository_url().removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{repo}/blob/{book._config_value('branch')}/{page.as_posix()}"


def inspect(html: str, rendered: str, *, chapter: bool, colab: str | None = None) -> tuple[dict, list[str]]:
    """Counts of what the reader sees, and the problems found (html: the file; rendered: the page's DOM)."""
    main = rendered.split('<main', 1)[-1]
    seen = {
        "maths": len(re.findall(r"<mjx-container", main)),
        "maths errors": len(re.findall(r"<mjx-merror", main)),
        # the theme's own images (the Colab launch logo, in _static/) are not figures
        "figures": len(re.findall(r"<img\b[^>]*src=\"(?![^\"]*_static/)[^\"]*\.(?:png|svg|jpg)", main))
        + main.count('src="data:image/png'),
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
    if re.search(r"cdn\.jsdelivr\.net/npm/(?:mathjax|vega)|cdnjs\.cloudflare\.com/ajax/libs/require", html):
        problems.append("still loads MathJax/RequireJS/Vega from a CDN (run tools/offline.py)")
    return seen, problems


def js_errors(messages: list[tuple[str, str, str]]) -> list[str]:
    """The page's JavaScript errors, (kind, message, address) with kind 'pageerror' or 'console', less
    the KNOWN_ERRORS every Jupyter Book page shows."""
    return [f"{kind}: {text}" for kind, text, where in messages
            if not any(k == kind and re.search(t, text) and re.search(w, where) for k, t, w in KNOWN_ERRORS)]


def chart_problems(charts: list[dict], errors: list[str]) -> list[str]:
    """Problems with a page's live charts: each is {'id', 'marks' (drawn), 'error' (what it shows
    instead, or None), 'sliders': [(name, changed)]}; errors are js_errors() of the page."""
    problems = []
    for i, chart in enumerate(charts, 1):
        name = f"chart {i} ({chart['id']})"
        if chart["error"]:
            problems.append(f"{name} shows an error: {chart['error'][:200]}")
        elif not chart["marks"]:
            problems.append(f"{name} is not drawn (is Vega loading? run tools/offline.py)")
        dead = [s for s, changed in chart["sliders"] if not changed]
        if chart["marks"] and dead:
            problems.append(f"{name}: moving slider {', '.join(map(repr, dead))} does not change the drawing")
    if charts and errors:
        problems.append(f"{len(errors)} JavaScript errors on a page with a live chart, "
                        f"first: {errors[0][:300]}")
    return problems


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(root: Path):
    """An http server for root on 127.0.0.1 (a free port) in a thread; yields its base address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def offline_context(chromium, base: str, blocked: list[str]):
    """A fresh browser context (cold cache) that aborts, and records in blocked, every request that
    does not go to base."""
    context = chromium.new_context(viewport=VIEWPORT)
    host = urlsplit(base).netloc

    def route(r):
        if urlsplit(r.request.url).netloc == host:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return context


def _listen(page, messages: list):
    page.on("pageerror", lambda e: messages.append(("pageerror", e.message, e.stack or "")))
    page.on("console", lambda m: messages.append(("console", m.text, m.location.get("url", "")))
            if m.type == "error" else None)


def read_charts(page) -> list[dict]:
    """Wait for each live chart on the page to draw, then move each of its sliders and see if the
    drawing changes."""
    charts = []
    for el in page.query_selector_all(CHART):
        try:
            page.wait_for_function("el => el.querySelector('svg.marks, canvas.marks, .error')", arg=el,
                                   timeout=TIMEOUT_MS)
        except Exception:  # playwright's TimeoutError: reported below as "not drawn"
            pass
        error = el.eval_on_selector_all(".error", "es => es.map(e => e.textContent).join(' ')") or None
        drawing = el.evaluate(DRAWING_JS)
        sliders = []
        for input_ in el.query_selector_all(".vega-bindings input[type=range]"):
            name = input_.evaluate("i => ((i.closest('.vega-bind') || i).querySelector('.vega-bind-name')"
                                   " || i).textContent.trim() || i.name")
            before = el.evaluate(DRAWING_JS)["text"]
            input_.evaluate(MOVE_JS)
            try:
                page.wait_for_function(f"([el, before]) => ({DRAWING_JS})(el).text !== before",
                                       arg=[el, before], timeout=SLIDER_MS)
                sliders.append((name, True))
            except Exception:
                sliders.append((name, False))
        charts.append({"id": el.get_attribute("id") or "vega-embed", "marks": drawing["marks"],
                       "error": error, "sliders": sliders})
    return charts


def check_page(chromium, base: str, root: Path, page: Path, *, chapter: bool, colab: str | None,
               screenshot: Path | None = None) -> tuple[dict, list[str]]:
    """Open one built page (page: its path in the toc) offline; return what the reader sees, and the
    problems."""
    html_file = root / page.with_suffix(".html")
    html = html_file.read_text(encoding="utf-8")
    blocked, messages = [], []
    context = offline_context(chromium, base, blocked)
    try:
        tab = context.new_page()
        _listen(tab, messages)
        tab.goto(base + html_file.relative_to(root).as_posix(), wait_until="load", timeout=60_000)
        tab.evaluate(MATHJAX_JS, TIMEOUT_MS)
        if "application/vnd.jupyter.widget-state+json" in html:
            try:
                tab.wait_for_selector(".jupyter-widgets", timeout=TIMEOUT_MS)
            except Exception:  # reported by inspect() as "no widget rendered"
                pass
        charts = read_charts(tab)
        seen, problems = inspect(html, tab.content(), chapter=chapter, colab=colab)
        if screenshot is not None:
            tab.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    errors = js_errors(messages)
    seen["charts"] = f"{sum(bool(c['marks']) for c in charts)}/{len(charts)}"
    seen["sliders moved"] = sum(len(c["sliders"]) for c in charts)
    seen["js errors"] = len(errors)
    seen["blocked requests"] = len(blocked)
    problems += chart_problems(charts, errors)
    if blocked and problems:
        hosts = sorted({urlsplit(u).netloc for u in blocked})
        problems.append(f"it asked the network for {len(blocked)} files (from {', '.join(hosts)})")
    return seen, problems


def chart_weight(root: Path, html_file: Path, loaded: list[str]) -> dict:
    """Bytes a page's live charts cost: the vendored vega files it loaded (raw, gzipped) and the charts'
    inline HTML (the style, container and script Altair writes, spec included)."""
    files = {root / urlsplit(u).path.lstrip("/") for u in loaded if re.search(r"/_vendor/vega[-\w.]*/", u)}
    raw = sum(f.stat().st_size for f in files)
    zipped = sum(len(gzip.compress(f.read_bytes(), 6)) for f in files)
    html = html_file.read_text(encoding="utf-8")
    inline = re.findall(r"<style>\s*#altair-viz-.*?</script>", html, re.S)
    return {"libraries": raw, "libraries gzip": zipped, "charts": len(inline),
            "inline": sum(len(s.encode()) for s in inline)}


def measure(chromium, base: str, root: Path, page: Path, loads: int) -> dict:
    """Weight of the page's charts, and the median times (ms from navigation start) to the first chart
    drawn and to the end of the page's load event (for comparison)."""
    html_file = root / page.with_suffix(".html")
    times, onload, loaded = [], [], []
    for _ in range(loads):
        context = offline_context(chromium, base, [])
        context.add_init_script(FIRST_CHART_JS)
        try:
            tab = context.new_page()
            tab.on("response", lambda r: loaded.append(r.url) if r.ok else None)
            tab.goto(base + html_file.relative_to(root).as_posix(), wait_until="load", timeout=60_000)
            tab.wait_for_function("() => window.__firstChartMs !== undefined", timeout=TIMEOUT_MS)
            times.append(tab.evaluate("() => window.__firstChartMs"))
            onload.append(tab.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd"))
        finally:
            context.close()
    return {**chart_weight(root, html_file, loaded), "first chart ms": statistics.median(times),
            "loads": times, "load event ms": statistics.median(onload)}


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} kB"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", nargs="?", default=str(book.ROOT / "_build" / "html"))
    ap.add_argument("--screenshots", metavar="DIR", help="also save a PNG of each page here")
    ap.add_argument("--measure", metavar="N", type=int, nargs="?", const=5, default=None,
                    help="also measure each page with a live chart: bytes, and the median of N loads (5)")
    args = ap.parse_args(argv)
    if args.measure is not None and args.measure < 1:
        ap.error(f"--measure takes a number of loads >= 1, got {args.measure}")
    exe, sync_playwright = browser(), playwright()
    missing = ("Chromium (apt-get install chromium)" if exe is None else
               "the playwright package (pip install playwright; never `playwright install`)"
               if sync_playwright is None else None)
    if missing:
        if in_ci():
            print(f"check_pages: FAIL: no {missing} in CI (CI=true)")
            return 1
        print(f"check_pages: no {missing} here; pages not checked")
        return 0
    root = Path(args.html)
    shots = Path(args.screenshots) if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    failed = 0
    with serve(root) as base, sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=exe, args=FLAGS)
        for page in book.toc_files():
            html_file = root / page.with_suffix(".html")
            if not html_file.is_file():
                print(f"FAIL {page}: not built ({html_file} missing)")
                failed += 1
                continue
            chapter = page.parent.name == "book" and page.stem.startswith("ch")
            png = shots / (page.as_posix().replace("/", "_") + ".png") if shots else None
            seen, problems = check_page(chromium, base, root, page, chapter=chapter, screenshot=png,
                                        colab=colab_link(page) if page.suffix == ".ipynb" else None)
            status = "FAIL" if problems else "ok  "
            counts = ", ".join(f"{k} {v}" for k, v in seen.items())
            print(f"{status} {page}: {counts}" + (f"  <- {'; '.join(problems)}" if problems else ""))
            failed += bool(problems)
            if args.measure and not problems and seen["charts"] != "0/0":
                m = measure(chromium, base, root, page, args.measure)
                print(f"     cost of its {m['charts']} live charts: vega libraries {_kb(m['libraries'])} "
                      f"({_kb(m['libraries gzip'])} gzipped), inline specs {_kb(m['inline'])}; "
                      f"first chart drawn "
                      f"{m['first chart ms']:.0f} ms after navigation start (median of "
                      f"{', '.join(f'{t:.0f}' for t in m['loads'])} ms; the load event ends at "
                      f"{m['load event ms']:.0f} ms)")
        chromium.close()
    print(f"pages: {len(book.toc_files()) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
