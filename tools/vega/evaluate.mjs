// Evaluate a Vega-Lite spec headless and print what its marks draw, as JSON.
//
//   node tools/vega/evaluate.mjs [request.json]      (the request on stdin when no file is given)
//
// request: {"spec": <Vega-Lite spec, e.g. altair's chart.to_dict()>,
//           "settings": [{"beta": 0.95, "gamma": 0.97}, ...],   (param values; [{}] when absent)
//           "marks": ["stability_bounds", ...]}   (optional: only the marks whose names start so)
// prints:  {"vega": "6.4.0", "vega_lite": "6.4.1",
//           "runs": [{"settings": {...}, "signals": {name: value}, "marks": {name: [row, ...]}}, ...]}
// "marks" holds, for every named mark of the compiled Vega spec, the rows of the dataset it draws
// (after every transform); "signals" the value of every top-level signal. Non-finite numbers are
// written as the strings "Infinity", "-Infinity" and "NaN" (JSON has no such numbers).
// The view runs with renderer "none": nothing is drawn, the dataflow is computed as in a browser.
import { readFileSync } from 'node:fs';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

function readRequest() {
  const file = process.argv[2];
  return JSON.parse(readFileSync(file && file !== '-' ? file : 0, 'utf8'));
}

// name -> dataset of every named mark, searching group marks too. A mark inside a facet group (a line
// or area with a colour or detail channel) draws a facet of the group's dataset: that dataset is its.
function markData(spec, out = {}, facets = {}) {
  for (const mark of spec.marks || []) {
    const from = mark.from || {};
    if (mark.name && from.data) out[mark.name] = facets[from.data] || from.data;
    const inner = from.facet ? { ...facets, [from.facet.name]: facets[from.facet.data] || from.facet.data } : facets;
    markData(mark, out, inner);
  }
  return out;
}

function plain(value) {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out = {};
    for (const [k, v] of Object.entries(value)) if (typeof v !== 'function') out[k] = plain(v);
    return out;
  }
  return value;
}

async function main() {
  const request = readRequest();
  if (!request || typeof request.spec !== 'object') throw new Error('the request needs a "spec" object');
  const compiled = vegaLite.compile(request.spec).spec;
  const wanted = request.marks;
  const marks = Object.fromEntries(Object.entries(markData(compiled))
    .filter(([name]) => !wanted || wanted.some((prefix) => name.startsWith(prefix))));
  const signals = (compiled.signals || []).map((s) => s.name);
  const runs = [];
  for (const settings of request.settings || [{}]) {
    const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
    for (const [name, value] of Object.entries(settings)) {
      if (!signals.includes(name)) throw new Error(`no signal ${JSON.stringify(name)}; the spec has ${signals}`);
      view.signal(name, value);
    }
    await view.runAsync();
    const run = { settings, signals: {}, marks: {} };
    for (const name of signals) run.signals[name] = plain(view.signal(name));
    for (const [name, data] of Object.entries(marks)) run.marks[name] = plain(view.data(data));
    runs.push(run);
    view.finalize();
  }
  process.stdout.write(JSON.stringify({ vega: vega.version, vega_lite: vegaLite.version, runs }));
}

main().catch((err) => {
  process.stderr.write(`evaluate.mjs: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
