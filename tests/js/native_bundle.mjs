// The node half of tests/js/test_js_native_bundle.py: the JS package (js/) on a bundle that
// mof-quantize --native extended, with onnxruntime-node. Reads the fixture write_fixture.py wrote for
// that bundle (int8 only) and prints one JSON report on stdout for pytest to judge:
//   files      graph name -> the file Model.load opened (it must be the stock *.int8.onnx)
//   selfCheck  loadModel(..., {selfCheck: true})'s verdict
//   cases      per fixture case and turn, the ids, reply, stop, refills and position from Python's draws
//   logits     the fixture's exact and stream windows recomputed here (float32 values, for max |d|)
//   nativeOpen per *.native.onnx file, what onnxruntime-node says when asked to open it directly
//
//   node tests/js/native_bundle.mjs FIXTURE.json      (cwd: anywhere; js/node_modules must exist)
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'js');
const ort = createRequire(path.join(JS, 'package.json'))('onnxruntime-node');
const { loadModel, StreamDecoder } = await import(pathToFileURL(path.join(JS, 'src', 'node.js')).href);
const { runCase } = await import(pathToFileURL(path.join(JS, 'test', 'helpers.js')).href);

const fixture = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const bundle = fixture.bundle;

async function logitsOf(m, c) {
  if (c.kind === 'exact') return m.exactLogits(c.ids);
  const dec = new StreamDecoder(m, c.refill_every);
  let got;
  for (const ids of c.feeds) got = await dec.feed(ids);
  return got;
}

/** What onnxruntime-node does with a fused graph handed to it directly: null if it opens, else its
    error's first line. */
async function openDirectly(file, weights) {
  const data = new Uint8Array(fs.readFileSync(path.join(bundle, file)));
  const externalData = [{ path: weights, data: new Uint8Array(fs.readFileSync(path.join(bundle, weights))) }];
  try {
    const s = await ort.InferenceSession.create(data, { externalData, logSeverityLevel: 4 });
    await s.release();
    return null;
  } catch (e) {
    return String(e && e.message ? e.message : e).split('\n')[0].slice(0, 300);
  }
}

const m = await loadModel(bundle, { ort, precision: 'int8', selfCheck: true });
const sc = m.selfCheckResult;
const cases = [];
for (const c of fixture.cases) {
  const { got } = await runCase(m, c);
  cases.push({ name: c.name, turns: got.map(({ ids, output, stopped_by, refills, position, drawn }) =>
    ({ ids, output, stopped_by, refills, position, drawn })) });
}
const logits = [];
for (const c of fixture.logits.int8) logits.push(Array.from(await logitsOf(m, c)));
const manifest = JSON.parse(fs.readFileSync(path.join(bundle, 'manifest.json'), 'utf8'));
const nativeOpen = {};
for (const entry of Object.values(manifest.graphs)) {
  if (entry.int8_native) nativeOpen[entry.int8_native] = await openDirectly(entry.int8_native, manifest.weights.int8);
}
console.log(JSON.stringify({
  onnxruntime: ort.env.versions.node, files: m.files, sessions: Object.keys(m.sessions),
  selfCheck: { passed: sc.passed, line: sc.line(), maxAbsDiff: sc.maxAbsDiff, rows: sc.rows, top1Agree: sc.top1Agree },
  cases, logits, nativeOpen,
}));
await m.release();
