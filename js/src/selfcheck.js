// The bundle's self-check, as mof.runtime.selfcheck does it (docs/bundle-format.md, "self_check"):
// the reference logits the export recorded for six fixed probes are recomputed with the host's
// onnxruntime and compared. Rows of the batched probes run one at a time (this package decodes one
// row per call). The recorded tolerance for the reference's CPU kind applies when the host says its
// CPU is of that kind (`cpu`: {machine, flags} as mof.runtime.machine.cpu_features; Node's loadModel
// reads /proc/cpuinfo), the one for another kind otherwise (a browser: onnxruntime-web's own kernels).
//
//   const result = await selfCheck(model, { cpu });   // { passed, maxAbsDiff, atol, top1Agree, rows, probes, line() }
//   loadModel(dir, { ort, selfCheck: true }) // the same while loading; a MofError if it fails

import { BundleError, MofError } from './errors.js';

export const SECTION = 'self_check';
export const VERSION = 1;
const CALLS = ['exact', 'prefill', 'refill-step'];
const TYPES = { int32: Int32Array, float32: Float32Array };

function base64Bytes(text) {
  if (typeof Buffer !== 'undefined') return new Uint8Array(Buffer.from(text, 'base64'));
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** A manifest ARRAY ({dtype, shape, base64}, little-endian) as {shape, data}. */
export function decodeArray(d, where) {
  const Type = d && TYPES[d.dtype];
  const bad = () => new BundleError(`${where}: a malformed array in the manifest's ${SECTION}`);
  if (!Type || !Array.isArray(d.shape) || typeof d.base64 !== 'string') throw bad();
  const bytes = base64Bytes(d.base64);
  const n = d.shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== n * 4) throw bad();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const data = new Type(n);
  for (let i = 0; i < n; i++) data[i] = d.dtype === 'int32' ? view.getInt32(4 * i, true) : view.getFloat32(4 * i, true);
  return { shape: d.shape, data };
}

function reference(model) {
  const where = model.where;
  const section = model.manifest[SECTION];
  const rec = section && section.precisions && section.precisions[model.precision];
  if (!rec) {
    throw new MofError(`${where} records no reference logits for ${model.precision} (made before mof's self-check); `
      + `add them on the machine that exported it: mof-check --record ${where}`);
  }
  if (section.version !== VERSION) throw new BundleError(`${where}: self_check version ${section.version} is not ${VERSION}; this mof cannot read it`);
  const probes = (section.probes || []).map((p) => {
    if (!CALLS.includes(p.call)) throw new BundleError(`${where}: the manifest's ${SECTION} probe ${JSON.stringify(p.name)} is malformed`);
    return { name: p.name, call: p.call, ids: decodeArray(p.ids, where), next: p.next ? decodeArray(p.next, where) : null };
  });
  const want = {};
  for (const k of ['top_ids', 'top_logits', 'sample_logits', 'logsumexp', 'mean']) want[k] = decodeArray(rec[k], where);
  return { section, rec, probes, want };
}

/** The logits [V] of row r of a probe. */
async function probeRow(model, probe, r) {
  const [, T] = probe.ids.shape;
  const ids = Array.from(probe.ids.data.subarray(r * T, (r + 1) * T));
  if (probe.call === 'exact') return model.exactLogits(ids);
  if (probe.call === 'prefill') return (await model.step(ids, model.zeroState())).logits;
  const { state } = await model.refill(ids);
  return (await model.step([probe.next.data[r]], state)).logits;
}

/** max |Δ| over a row's kept logits and sums, and whether its top-1 is the recorded one (or tied within 2 atol). */
function compareRow(logits, want, sample, row, atol) {
  const top = want.top_ids.shape[1];
  let worst = 0;
  const note = (d) => { worst = Number.isNaN(d) ? Infinity : Math.max(worst, d); };
  for (let j = 0; j < top; j++) note(Math.abs(logits[want.top_ids.data[row * top + j]] - want.top_logits.data[row * top + j]));
  sample.forEach((id, j) => note(Math.abs(logits[id] - want.sample_logits.data[row * sample.length + j])));
  let max = -Infinity, best = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) { max = logits[i]; best = i; }
  let sum = 0, total = 0;
  for (let i = 0; i < logits.length; i++) { sum += Math.exp(logits[i] - max); total += logits[i]; }
  note(Math.abs(Math.fround(max + Math.log(sum)) - want.logsumexp.data[row]));
  note(Math.abs(Math.fround(total / logits.length) - want.mean.data[row]));
  const first = want.top_logits.data[row * top];
  let agree = false;
  for (let j = 0; j < top; j++) {
    if (want.top_ids.data[row * top + j] === best && want.top_logits.data[row * top + j] >= first - 2 * atol) agree = true;
  }
  return { worst, agree };
}

/** The same CPU kind for a precision's kernels (mof.runtime.machine.same_cpu_kind): architecture and `flags` (null: all). */
export function sameCpuKind(a, b, flags = null) {
  if (!a || !b) return false;
  const arch = (r) => ({ amd64: 'x86_64', x64: 'x86_64', arm64: 'aarch64' }[String(r.machine || 'x86_64').toLowerCase()] || String(r.machine).toLowerCase());
  const pick = (r) => (r.flags || []).filter((f) => flags === null || flags.includes(f)).join(' ');
  return arch(a) === arch(b) && pick(a) === pick(b);
}

/** Recompute the bundle's references for model.precision here and compare. */
export async function selfCheck(model, { cpu = null } = {}) {
  const { section, rec, probes, want } = reference(model);
  const recordedCpu = (rec.measured_on || {}).cpu;
  const sameKind = sameCpuKind(cpu, recordedCpu, Array.isArray(rec.cpu_kind_flags) ? rec.cpu_kind_flags : null);
  const atol = Number(sameKind ? rec.atol : (rec.atol_other_cpu ?? rec.atol));
  const sample = section.sample_ids;
  const results = [];
  let row = 0;
  for (const probe of probes) {
    let worst = 0, agree = 0;
    for (let r = 0; r < probe.ids.shape[0]; r++, row++) {
      const got = compareRow(await probeRow(model, probe, r), want, sample, row, atol);
      worst = Math.max(worst, got.worst);
      agree += got.agree ? 1 : 0;
    }
    results.push({ name: probe.name, rows: probe.ids.shape[0], maxAbsDiff: worst, top1Agree: agree });
  }
  const maxAbsDiff = Math.max(...results.map((p) => p.maxAbsDiff));
  const rows = results.reduce((s, p) => s + p.rows, 0);
  const top1Agree = results.reduce((s, p) => s + p.top1Agree, 0);
  const passed = maxAbsDiff <= atol && top1Agree === rows;
  const where = sameKind ? '' : ', another CPU kind than the reference\'s';
  const line = () => `${model.precision.padEnd(5)} ${passed ? '✓' : '✗'} max |Δlogit| ${Number(maxAbsDiff.toPrecision(2))} `
    + `(atol ${atol}${where}), top-1 ${top1Agree}/${rows}`;
  return { precision: model.precision, passed, maxAbsDiff, atol, sameCpuKind: sameKind, top1Agree, rows,
    probes: results, recordedOn: rec.measured_on, line };
}
