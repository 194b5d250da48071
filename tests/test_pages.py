"""The built pages: tools/offline.py's vendoring (CDN addresses -> _vendor/ files) and tools/check_pages.py."""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import offline  # noqa: E402  (tools/offline.py)

# Copied from a page that Jupyter Book 1 built (MyST-NB 1, altair 6): the head of a page with saved
# widget state, and the RequireJS `paths` that Altair's default renderer writes for a live chart.
HEAD = """\
    <script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
    <script crossorigin="anonymous" integrity="sha256-Ae2Vz/4ePdIu6ZyI/5ZGsYnb+m0JlOmKPjt6XZ9JJkA=" \
src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>
    <script crossorigin="anonymous" data-jupyter-widgets-cdn="https://cdn.jsdelivr.net/npm/" \
src="https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js"></script>
"""
CHART = """\
<div id="altair-viz-380b01612ef24cdb8fc90caee6b6afd1"></div>
<script type="text/javascript">
    const paths = {
      "vega": "https://cdn.jsdelivr.net/npm/vega@6?noext",
      "vega-lib": "https://cdn.jsdelivr.net/npm/vega-lib?noext",
      "vega-lite": "https://cdn.jsdelivr.net/npm/vega-lite@6.4.1?noext",
      "vega-embed": "https://cdn.jsdelivr.net/npm/vega-embed@7?noext",
    };
    if(typeof define === "function" && define.amd) {
      requirejs.config({paths});
    } else {
      maybeLoadScript("vega", "6")
        .then(() => maybeLoadScript("vega-lite", "6.4.1"))
    }
</script>
"""
# Altair's "standard" HTML template (Chart.save): plain script tags.
SAVED_CHART = """\
  <script type="text/javascript" src="https://cdn.jsdelivr.net/npm/vega@6"></script>
  <script type="text/javascript" src="https://cdn.jsdelivr.net/npm/vega-lite@6.4.1"></script>
  <script type="text/javascript" src="https://cdn.jsdelivr.net/npm/vega-embed@7"></script>
"""
# What each fake npm package holds: its package.json's browser build (the file the CDN serves).
BUILDS = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js", "vega-embed": "build/vega-embed.min.js",
          "mathjax": "es5/tex-mml-chtml.js", "@jupyter-widgets/html-manager": "dist/embed-amd.js",
          "requirejs": "require.js"}


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """offline.fetch without a registry: a small package per call; records (package, version) asked for."""
    asked = []

    def fetch(package, version):
        asked.append((package, version))
        root = tmp_path / "npm" / f"{offline._local_name(package)}-{version}" / "package"
        (root / BUILDS[package]).parent.mkdir(parents=True, exist_ok=True)
        (root / BUILDS[package]).write_text(f"/* {package}@{version} */")
        (root / "package.json").write_text(json.dumps({"name": package, "jsdelivr": BUILDS[package]}))
        return root

    monkeypatch.setattr(offline, "fetch", fetch)
    return asked


def _site(tmp_path, pages: dict[str, str]) -> Path:
    html = tmp_path / "html"
    for name, body in pages.items():
        (html / name).parent.mkdir(parents=True, exist_ok=True)
        (html / name).write_text(f"<html><head>\n{HEAD}</head><body>\n{body}</body></html>\n")
    return html


def test_live_chart_loads_vega_from_vendor(tmp_path, fake_npm):
    html = _site(tmp_path, {"book/ch1.html": CHART, "index.html": ""})
    assert offline.vendor(html) == 2
    page = (html / "book/ch1.html").read_text()
    assert '"vega": "../_vendor/vega-6/vega.min.js?noext"' in page
    assert '"vega-lite": "../_vendor/vega-lite-6.4.1/vega-lite.min.js?noext"' in page
    assert '"vega-embed": "../_vendor/vega-embed-7/vega-embed.min.js?noext"' in page
    assert '"vega-lib": "../_vendor/vega-6/vega.min.js?noext"' in page  # the old name of vega
    assert "cdn.jsdelivr.net/npm/vega" not in page
    assert (html / "_vendor/vega-lite-6.4.1/vega-lite.min.js").read_text() == "/* vega-lite@6.4.1 */"
    assert {a for a in fake_npm if a[0].startswith("vega")} == {("vega", "6"), ("vega-lite", "6.4.1"),
                                                                ("vega-embed", "7")}
    assert "cdn.jsdelivr.net/npm/vega" not in (html / "index.html").read_text()


def test_saved_chart_script_tags_load_from_vendor(tmp_path, fake_npm):
    html = _site(tmp_path, {"chart.html": SAVED_CHART})
    offline.vendor(html)
    page = (html / "chart.html").read_text()
    assert '<script type="text/javascript" src="_vendor/vega-6/vega.min.js"></script>' in page
    assert 'src="_vendor/vega-embed-7/vega-embed.min.js"' in page and "cdn.jsdelivr.net/npm/vega" not in page


def test_pages_without_charts_fetch_no_vega(tmp_path, fake_npm):
    """MathJax, RequireJS and the widget manager are vendored as before; vega only where a chart is."""
    html = _site(tmp_path, {"book/intro.html": "$x$"})
    offline.vendor(html)
    assert not [a for a in fake_npm if a[0].startswith("vega")] and not list((html / "_vendor").glob("vega*"))
    page = (html / "book/intro.html").read_text()
    assert '<script defer="defer" src="../_vendor/mathjax/tex-mml-chtml.js"></script>' in page
    assert '<script src="../_vendor/requirejs/require.js"></script>' in page  # no integrity, no crossorigin
    assert 'src="../_vendor/jupyter-widgets-html-manager/embed-amd.js"' in page


def test_a_vega_address_without_version_stays(tmp_path, fake_npm):
    html = _site(tmp_path, {"a.html": '<script src="https://cdn.jsdelivr.net/npm/vega-lite"></script>'})
    offline.vendor(html)
    assert 'src="https://cdn.jsdelivr.net/npm/vega-lite"' in (html / "a.html").read_text()
    assert not [a for a in fake_npm if a[0].startswith("vega")]


def test_without_a_registry_the_cdn_links_stay(tmp_path, monkeypatch, capsys):
    def no_npm(package, version):
        raise RuntimeError("npm is not installed")

    monkeypatch.setattr(offline, "fetch", no_npm)
    html = _site(tmp_path, {"book/ch1.html": CHART})
    before = (html / "book/ch1.html").read_text()
    assert offline.main([str(html)]) == 0
    assert "kept the CDN links" in capsys.readouterr().out
    assert (html / "book/ch1.html").read_text() == before


def test_entry_file_is_the_cdn_build(tmp_path):
    (tmp_path / "package.json").write_text(json.dumps({"name": "x", "unpkg": "./build/x.min.js", "main": "x.js"}))
    assert offline.entry_file(tmp_path) == "build/x.min.js"
    (tmp_path / "package.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(RuntimeError, match="names no browser build"):
        offline.entry_file(tmp_path)


def test_the_versions_altair_asks_for_are_vendored(tmp_path):
    """The addresses a real Altair chart writes are the ones offline.py recognises, at alt.*_VERSION."""
    alt = pytest.importorskip("altair")
    chart = alt.Chart(alt.sequence(1, 3, as_="n")).mark_line().encode(x="n:Q").add_params(
        alt.param(name="p", value=1, bind=alt.binding_range(min=0, max=2)))
    page = tmp_path / "p.html"
    page.write_text(chart._repr_mimebundle_()["text/html"])
    assert offline.vega_requests([page]) == {("vega", alt.VEGA_VERSION), ("vega-lite", alt.VEGALITE_VERSION),
                                             ("vega-embed", alt.VEGAEMBED_VERSION)}


# tools/check_pages.py: the pure checks, then the browser check on a small site (Chromium + playwright).

import check_pages  # noqa: E402  (tools/check_pages.py)

COLAB_LOGO = '<main><img alt="Colab logo" src="../_static/images/logo_colab.png"></main>'


@pytest.mark.parametrize("ci, status, said", [("true", 1, "FAIL"), ("", 0, "pages not checked")])
def test_page_check_without_playwright(monkeypatch, capsys, ci, status, said):
    """Chromium is there but the playwright package is not: fail in CI, skip elsewhere, saying so."""
    monkeypatch.setattr(check_pages, "browser", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(check_pages, "playwright", lambda: None)
    monkeypatch.setenv("CI", ci)
    assert check_pages.main([str(ROOT / "_build" / "html")]) == status
    out = capsys.readouterr().out
    assert said in out and "playwright" in out


def test_the_colab_logo_is_not_a_figure():
    seen, problems = check_pages.inspect("", COLAB_LOGO, chapter=True)
    assert seen["figures"] == 0 and "no figure on a chapter page" in problems
    seen, problems = check_pages.inspect("", '<main><img src="../_images/a1b2.png">', chapter=True)
    assert seen["figures"] == 1 and not problems


def test_a_vega_cdn_address_is_a_problem():
    _, problems = check_pages.inspect(CHART, "<main>", chapter=False)
    assert problems == ["still loads MathJax/RequireJS/Vega from a CDN (run tools/offline.py)"]


def test_js_errors_leave_out_only_what_every_page_shows():
    messages = [("pageerror", "Identifier 'THEBE_JS_URL' has already been declared", ""),
                ("console", "Got invalid theme mode: . Resetting to auto.", "http://h/_static/scripts/pydata-sphinx-theme.js"),
                ("console", "Failed to load resource: 404", "http://h/book/@jupyter-widgets/html-manager/dist/a.woff2"),
                ("console", "Failed to load resource: 404", "http://h/_vendor/vega-6/vega.min.js?noext"),
                ("pageerror", "Cannot read properties of undefined (reading 'Queue')", "at t (http://h/x/embed-amd.js:6:1)"),
                ("pageerror", "vegaEmbed is not defined", "at http://h/book/ch1.html:40:3")]
    assert check_pages.js_errors(messages) == ["console: Failed to load resource: 404",
                                               "pageerror: vegaEmbed is not defined"]


def _chart(**kw):
    return {"id": "altair-viz-1", "marks": 12, "error": None, "sliders": [("beta", True)], **kw}


@pytest.mark.parametrize("charts, errors, expected", [
    ([_chart()], [], []),
    ([], ["pageerror: x"], []),  # errors on a page without a live chart are not the charts' business
    ([_chart(marks=0)], [], ["chart 1 (altair-viz-1) is not drawn (is Vega loading? run tools/offline.py)"]),
    ([_chart(marks=0, error="Error loading script")], [], ["chart 1 (altair-viz-1) shows an error: Error loading script"]),
    ([_chart(), _chart(sliders=[("beta", True), ("gamma", False)])], [],
     ["chart 2 (altair-viz-1): moving slider 'gamma' does not change the drawing"]),
    ([_chart()], ["pageerror: boom"], ["1 JavaScript errors on a page with a live chart, first: pageerror: boom"]),
])
def test_chart_problems(charts, errors, expected):
    assert check_pages.chart_problems(charts, errors) == expected


def _browser_or_skip():
    exe, sync_playwright = check_pages.browser(), check_pages.playwright()
    if exe is None or sync_playwright is None:
        if check_pages.in_ci():
            pytest.fail("no Chromium or no playwright in CI")
        pytest.skip("no Chromium (apt-get install chromium) or no playwright package here")
    return exe, sync_playwright


def test_the_browser_check_sees_live_and_dead_sliders(tmp_path):
    """A real Altair chart, vendored by offline.py, in headless Chromium with the network cut: the live
    slider redraws the chart, a slider bound to a parameter that nothing uses is reported, and a
    page that still loads Vega from the CDN shows no chart (its requests are aborted and counted)."""
    alt = pytest.importorskip("altair")
    exe, sync_playwright = _browser_or_skip()
    base = alt.Chart(alt.sequence(1, 50, as_="n")).mark_line()
    live = base.transform_calculate(y="pow(datum.n, p)").encode(x="n:Q", y="y:Q").add_params(
        alt.param(name="p", value=1, bind=alt.binding_range(min=0, max=2, step=0.1, name="p")))
    dead = base.encode(x="n:Q", y="n:Q").add_params(
        alt.param(name="q", value=1, bind=alt.binding_range(min=0, max=2, step=0.1, name="q")))
    page = "<html><body><main>{}</main></body></html>"
    html = tmp_path / "html"
    html.mkdir()
    (html / "live.html").write_text(page.format(live._repr_mimebundle_()["text/html"]
                                                + dead._repr_mimebundle_()["text/html"]))
    (html / "cdn.html").write_text((html / "live.html").read_text())
    try:
        offline.vendor(html)
    except RuntimeError as err:  # no npm or no registry
        if check_pages.in_ci():
            raise
        pytest.skip(f"cannot vendor vega here: {err}")
    (html / "cdn.html").write_text(page.format(live._repr_mimebundle_()["text/html"]))
    with check_pages.serve(html) as address, sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=exe, args=check_pages.FLAGS)
        seen, problems = check_pages.check_page(chromium, address, html, Path("live.html"), chapter=False, colab=None)
        cdn_seen, cdn_problems = check_pages.check_page(chromium, address, html, Path("cdn.html"),
                                                        chapter=False, colab=None)
        chromium.close()
    assert seen["charts"] == "2/2" and seen["sliders moved"] == 2 and seen["blocked requests"] == 0
    assert len(problems) == 1 and re.search(r"chart 2 \(altair-viz-\w+\): moving slider 'q' does not change", problems[0])
    assert cdn_seen["charts"] == "0/1" and cdn_seen["blocked requests"] >= 1
    assert any("Vega from a CDN" in p for p in cdn_problems) and any("is not drawn" in p or "shows an error" in p
                                                                    for p in cdn_problems)
