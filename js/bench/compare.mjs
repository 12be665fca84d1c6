// The cases of a fixture written by tests/js/write_fixture.py (any bundle), decoded by the JS package
// on one onnxruntime flavour; for benchmarks/js_full_size.py:
//   node js/bench/compare.mjs FIXTURE onnxruntime-node|onnxruntime-web [THREADS]
// Prints one JSON line: per case whether the ids equal Python's, tokens and decode time; per precision
// the largest logit difference and argmax agreement over the fixture's windows.
import fs from 'node:fs';
import { loadModel, StreamDecoder } from '../src/node.js';
import { runCase } from '../test/helpers.js';

const [file, flavour, threads] = process.argv.slice(2);
const fixture = JSON.parse(fs.readFileSync(file, 'utf8'));
const ort = await import(flavour);
if (flavour === 'onnxruntime-web') ort.env.wasm.numThreads = Number(threads || 1);
const sessionOptions = flavour === 'onnxruntime-node' && threads ? { intraOpNumThreads: Number(threads) } : {};
const out = { flavour, version: ort.env.versions[flavour === 'onnxruntime-node' ? 'node' : 'web'], cases: [], logits: {} };
const precisions = [...new Set(fixture.cases.map((c) => c.precision))];
for (const precision of precisions) {
  const t0 = performance.now();
  const model = await loadModel(fixture.bundle, { ort, precision, sessionOptions, verifyAll: false });
  const loadMs = performance.now() - t0;
  for (const c of fixture.cases.filter((k) => k.precision === precision)) {
    const t = performance.now();
    const { got } = await runCase(model, c);
    const ms = performance.now() - t;
    const tokens = got.reduce((s, g) => s + g.ids.length, 0);
    const equal = c.turns.every((want, i) => JSON.stringify(want.ids) === JSON.stringify(got[i].ids));
    let firstDiff = null;
    c.turns.forEach((want, i) => {
      const k = want.ids.findIndex((id, j) => id !== got[i].ids[j]);
      if (firstDiff === null && (k >= 0 || want.ids.length !== got[i].ids.length)) firstDiff = { turn: i, token: k };
    });
    out.cases.push({ name: c.name, precision, equal, first_difference: firstDiff, tokens, ms, load_ms: loadMs });
  }
  let worst = 0;
  let agree = 0;
  for (const w of fixture.logits[precision] || []) {
    let logits;
    if (w.kind === 'exact') logits = await model.exactLogits(w.ids);
    else {
      const dec = new StreamDecoder(model, w.refill_every);
      for (const ids of w.feeds) logits = await dec.feed(ids);
    }
    let ia = 0;
    let ib = 0;
    for (let i = 0; i < logits.length; i++) {
      worst = Math.max(worst, Math.abs(logits[i] - w.logits[i]));
      if (logits[i] > logits[ia]) ia = i;
      if (w.logits[i] > w.logits[ib]) ib = i;
    }
    agree += ia === ib ? 1 : 0;
  }
  out.logits[precision] = { max_abs_diff: worst, argmax_equal: agree, windows: (fixture.logits[precision] || []).length };
  await model.release();
}
process.stdout.write(JSON.stringify(out) + '\n');
