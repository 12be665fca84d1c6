// The bundle's self-check in JavaScript (src/selfcheck.js), as mof-check does it in Python: the demo's
// recorded reference logits are reproduced with onnxruntime-node (which gives mof.runtime's logits bit
// for bit), other references are caught with a clear line, a bundle without them says how to add them,
// and onnxruntime-web's verdicts are measured and printed (fp32 must pass; int8's kernels round
// differently, 0.10 on longer decodes of the demo, docs/javascript.md: measured, not required).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { cpuFeatures, loadModel, selfCheck, MofError } from '../src/node.js';
import { DEMO, model } from './helpers.js';

ortWeb.env.wasm.numThreads = 1;
ortWeb.env.logLevel = 'error';

function copyDemo(change) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mof-selfcheck-'));
  const out = path.join(dir, 'demo.mof');
  fs.cpSync(DEMO, out, { recursive: true });
  const file = path.join(out, 'manifest.json');
  const m = JSON.parse(fs.readFileSync(file, 'utf8'));
  change(m);
  fs.writeFileSync(file, JSON.stringify(m));
  return out;
}

for (const precision of ['fp32', 'int8']) {
  test(`onnxruntime-node reproduces the demo's ${precision} references`, async () => {
    const result = await selfCheck(await model(ortNode, precision), { cpu: cpuFeatures() });
    console.log(`# node ${result.line()}`);
    assert.ok(result.passed, result.line());
    if (precision === 'int8' && cpuFeatures().flags.includes('avx2')) assert.ok(result.sameCpuKind, 'int8: any x86 CPU with AVX2');
    assert.equal(result.rows, 12);
    assert.ok(result.maxAbsDiff <= 1e-5, `${result.maxAbsDiff}`);
  });
}

test('selfCheck: true at load: other references are a one-line MofError', async () => {
  const dir = copyDemo((m) => { m.self_check.precisions.fp32.mean = m.self_check.precisions.int8.mean; });
  await assert.rejects(loadModel(dir, { ort: ortNode, selfCheck: true }), (e) => {
    assert.ok(e instanceof MofError);
    assert.match(e.message, /^demo\.mof: self-check failed: fp32  ✗ max \|Δlogit\| /);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
  const ok = await loadModel(DEMO, { ort: ortNode, precision: 'int8', selfCheck: true });
  assert.ok(ok.selfCheckResult.passed);
});

test('a bundle without references says how to add them', async () => {
  const dir = copyDemo((m) => { delete m.self_check; });
  const m = await loadModel(dir, { ort: ortNode });
  await assert.rejects(selfCheck(m), /records no reference logits for fp32 .*mof-check --record /);
});

test('onnxruntime-web: fp32 reproduces the references, int8 is measured', async () => {
  const fp32 = await selfCheck(await model(ortWeb, 'fp32'));
  const int8 = await selfCheck(await model(ortWeb, 'int8'));
  console.log(`# web ${fp32.line()}`);
  console.log(`# web ${int8.line()}`);
  assert.ok(fp32.passed, fp32.line());
  assert.ok(int8.maxAbsDiff < 0.3, int8.line());        // the probes: 2.9e-6 (✓); longer decodes 0.10
});
