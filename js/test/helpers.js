// What the tests share: the fixture mof.runtime wrote (tests/js/write_fixture.py), the demo bundle,
// and models loaded once per onnxruntime flavour and precision.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, ChatSession } from '../src/node.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const DEMO = path.join(ROOT, 'runtime', 'demo', 't6-demo.mof');
export const FIXTURE = process.env.MOF_FIXTURE || path.join(HERE, 'fixture.json');

/** The fixture, or null (with the command that writes it) when it has not been written. */
export function readFixture() {
  if (!fs.existsSync(FIXTURE)) return null;
  return JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
}
export const NO_FIXTURE = `no fixture at ${FIXTURE}: run  python tests/js/write_fixture.py ${path.relative(process.cwd(), FIXTURE)}`;

const cache = new Map();
/** A model per (flavour, precision), loaded once. */
export function model(ort, precision) {
  const key = `${ort === undefined ? '' : ortName(ort)}/${precision}`;
  if (!cache.has(key)) cache.set(key, loadModel(DEMO, { ort, precision }));
  return cache.get(key);
}

export function ortName(ort) {
  return ort.env && ort.env.versions && ort.env.versions.node ? 'onnxruntime-node' : 'onnxruntime-web';
}

/** Sampling options of a fixture case, with the recorded draws as the randomness (or the seed). */
export function sampling(c, draws) {
  const s = { ...c.sampling };
  if (draws) {
    let i = 0;
    s.random = () => {
      if (i >= draws.length) throw new Error(`drew more than the ${draws.length} draws Python made`);
      return draws[i++];
    };
    s.drawn = () => i;
  }
  return s;
}

/** Run the turns of a case in a ChatSession; per turn what the fixture records. */
export async function runCase(m, c, { useSeed = false, from = 0, session = null } = {}) {
  session = session || new ChatSession(m, c.sampling, { mode: c.mode, form: c.form, refillEvery: c.refill_every });
  const got = [];
  for (const turn of c.turns.slice(from)) {
    const s = sampling(c, useSeed ? null : turn.draws);
    const drawn = s.drawn;
    delete s.drawn;
    const gen = c.form === 'raw' ? session.continueText(turn.user, s) : session.turn(turn.user, s);
    const pieces = [];
    await gen.run({ onText: (p) => pieces.push(p) });
    session.finish(gen);
    got.push({ prompt: gen.prompt, ids: gen.ids, output: gen.output, pieces, stopped_by: gen.stats.stoppedBy,
      refills: gen.stats.refills, position: session.state ? session.state.position : null, drawn: drawn ? drawn() : null });
  }
  return { got, session };
}
