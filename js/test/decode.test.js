// The JS decoder against mof.runtime: the same token ids, text, stops, refills and positions for the
// same uniform draws (or greedy), in every mode and form of the fixture, fp32 / int8 / int4, with
// onnxruntime-node; Python's saved conversations resumed here, and ours resumed by Python (the
// pytest wrapper, tests/js/test_js_package.py, checks that direction).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ChatSession, Generator, RandomState, saveSession } from '../src/node.js';
import { NO_FIXTURE, model, readFixture, runCase } from './helpers.js';

const fixture = readFixture();
const skip = fixture ? false : NO_FIXTURE;
const cases = fixture ? fixture.cases : [];

for (const c of cases) {
  test(`${c.name} ${c.precision}: the ids mof.runtime sampled, from its draws`, { skip }, async () => {
    const m = await model(ort, c.precision);
    const { got } = await runCase(m, c);
    c.turns.forEach((want, i) => {
      assert.equal(got[i].prompt, want.prompt, `turn ${i}: the template's prompt`);
      assert.deepEqual(got[i].ids, want.ids, `turn ${i}: ids`);
      assert.equal(got[i].drawn, want.draws.length, `turn ${i}: one draw per sampled token, as Python`);
      assert.equal(got[i].output, want.output);
      assert.equal(got[i].pieces.join(''), want.output, 'the streamed pieces make the reply');
      assert.equal(got[i].stopped_by, want.stopped_by);
      assert.equal(got[i].refills, want.refills, `turn ${i}: refills`);
      assert.equal(got[i].position, want.position, `turn ${i}: the state's position`);
    });
  });
}

for (const c of cases.filter((k) => k.sampling.seed !== undefined && k.precision === 'fp32')) {
  test(`${c.name}: the same seed gives mof.runtime's ids (numpy's RandomState)`, { skip }, async () => {
    const { got } = await runCase(await model(ort, 'fp32'), c, { useSeed: true });
    c.turns.forEach((want, i) => assert.deepEqual(got[i].ids, want.ids));
  });
}

test('RandomState(seed).randomSample() is numpy\'s', { skip }, () => {
  const c = cases.find((k) => k.sampling.seed === 2);
  const rng = new RandomState(2);
  const want = c.turns[0].draws;
  assert.deepEqual(want.map(() => rng.randomSample()), want);
});

for (const c of cases.filter((k) => k.saved_after_first_turn)) {
  test(`${c.name} ${c.precision}: a conversation mof.runtime saved goes on here as it did there`, { skip }, async () => {
    const m = await model(ort, c.precision);
    const session = new ChatSession(m, c.sampling, { mode: c.mode, form: c.form, refillEvery: c.refill_every });
    session.loadBytes(Buffer.from(c.saved_after_first_turn, 'base64'), 'saved');
    const { got } = await runCase(m, c, { from: 1, session });
    assert.deepEqual(got[0].ids, c.turns[1].ids);
    assert.equal(got[0].output, c.turns[1].output);
    assert.equal(got[0].position, c.turns[1].position);
    // and the other way: our save after the first turn, for Python to resume (tests/js/test_js_package.py)
    const fresh = await runCase(m, { ...c, turns: c.turns.slice(0, 1) });
    const again = new ChatSession(m, c.sampling, { mode: c.mode, form: c.form, refillEvery: c.refill_every });
    again.loadBytes(fresh.session.saveBytes(), 'ours');
    const { got: resumed } = await runCase(m, c, { from: 1, session: again });
    assert.deepEqual(resumed[0].ids, c.turns[1].ids, 'our own save resumes exactly too');
    if (process.env.MOF_JS_OUT) {
      await saveSession(fresh.session, path.join(process.env.MOF_JS_OUT, `${c.name}-${c.precision}.npz`));
    }
  });
}

test('an AbortSignal stops a reply after the token being computed; the session then keeps no state', { skip }, async () => {
  const m = await model(ort, 'fp32');
  const session = new ChatSession(m, { seed: 1, max_tokens: 200, temperature: 1.0 }, { form: 'raw', mode: 'stream' });
  const controller = new AbortController();
  const gen = session.continueText('床前明月光，');
  let n = 0;
  const out = await gen.run({ onText: () => { if (++n === 3) controller.abort(); }, signal: controller.signal });
  assert.equal(gen.stats.stoppedBy, 'aborted');
  assert.ok(gen.ids.length >= 3 && gen.ids.length <= 4, `stopped after ${gen.ids.length} tokens`);
  assert.equal(out, gen.output);
  session.finish(gen);
  assert.equal(session.state, null);
});

test('a stop string is never streamed out, not even in part', { skip }, async () => {
  const m = await model(ort, 'fp32');
  const c = cases.find((k) => k.name === 'chat-stream' && k.precision === 'fp32');
  const { got } = await runCase(m, c);
  for (const t of got) for (const p of t.pieces) assert.ok(!p.includes('"'), JSON.stringify(t.pieces));
});

test('a prompt is one id per code point, unknown characters the unknown id', async () => {
  const m = await model(ort, 'fp32');
  const ids = m.vocab.encode('床前😀明');
  assert.equal(ids.length, 4);
  assert.equal(ids[2], m.vocab.unknownId);
  assert.throws(() => new Generator(m, '', {}), /the prompt is empty/);
});

for (const b of fixture ? fixture.broken : []) {
  test(`a broken bundle gets mof.runtime's one-line error: ${path.basename(b.path)} ${b.precision}`, async () => {
    const { loadModel } = await import('../src/node.js');
    await assert.rejects(loadModel(b.path, { ort, precision: b.precision }), (e) => {
      assert.equal(e.name === 'MofError' || e.name === 'BundleError', true, `${e.name}: ${e.message}`);
      assert.equal(e.message, b.error);
      return true;
    });
  });
}
