// Next-token selection, in the reference's order (runtime/sampling.py): repetition penalty on every
// distinct recent token, temperature, softmax, top-k, top-p, min-p, banned characters, then one
// uniform draw through numpy's choice algorithm. Arithmetic is float32 where numpy's is (Math.fround),
// so the same draw picks the same token as mof.runtime.

import { MofError, pyRepr } from './errors.js';
import { RandomState, freshSeed } from './random.js';

export const PENALTY_MODES = Object.freeze(['reference', 'sign-aware']);

/**
 * @typedef {object} SamplingOptions
 * @property {number} [temperature]        0 = greedy; reference chat default 0.68
 * @property {number} [top_k]              keep the k most likely tokens; 0 = off
 * @property {number} [top_p]              nucleus; 1 = off; reference chat default 0.8
 * @property {number} [min_p]              drop tokens below min_p * max probability; 0 = off
 * @property {number} [repetition_penalty] 1 = off; reference chat default 1.2
 * @property {string} [penalty_mode]       "reference" (logit /= p) or "sign-aware"
 * @property {number|null} [penalty_window] tokens the penalty looks back on; null = the model's window
 * @property {string[]} [ban]              tokens never produced (the reference's pass_char)
 * @property {string[]} [stop]             generation ends before the first occurrence of any
 * @property {number} [max_tokens]         tokens to generate at most
 * @property {number|null} [seed]          same seed -> same draws as mof.runtime; null = fresh randomness
 * @property {() => number} [random]       a uniform draw in [0, 1) per sampled token, instead of the seed's
 */

/** SamplingConfig's defaults (xiaothink's chat defaults). */
export const SAMPLING_DEFAULTS = Object.freeze({
  temperature: 0.68, top_k: 0, top_p: 0.8, min_p: 0.0, repetition_penalty: 1.2, penalty_mode: 'reference',
  penalty_window: null, ban: Object.freeze([]), stop: Object.freeze([]), max_tokens: 256, seed: null, random: null,
});

const CAMEL = { topK: 'top_k', topP: 'top_p', minP: 'min_p', repetitionPenalty: 'repetition_penalty',
  penaltyMode: 'penalty_mode', penaltyWindow: 'penalty_window', maxTokens: 'max_tokens' };

/**
 * A checked, frozen sampling configuration (Python's SamplingConfig; camelCase names accepted too).
 * @param {SamplingOptions} [options]
 */
export function samplingConfig(options = {}) {
  const given = {};
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue;
    const key = CAMEL[k] || k;
    if (!(key in SAMPLING_DEFAULTS)) throw new MofError(`unknown sampling option ${pyRepr(k)}`);
    given[key] = v;
  }
  const c = { ...SAMPLING_DEFAULTS, ...given };
  const bad = (m) => { throw new MofError(m); };
  const finite = (v) => typeof v === 'number' && Number.isFinite(v);
  if (!(finite(c.temperature) && c.temperature >= 0)) bad(`temperature must be >= 0, got ${c.temperature}`);
  if (!(Number.isInteger(c.top_k) && c.top_k >= 0)) bad(`top_k must be an integer >= 0, got ${c.top_k}`);
  if (!(c.top_p > 0 && c.top_p <= 1)) bad(`top_p must be in (0, 1], got ${c.top_p}`);
  if (!(c.min_p >= 0 && c.min_p < 1)) bad(`min_p must be in [0, 1), got ${c.min_p}`);
  if (!(finite(c.repetition_penalty) && c.repetition_penalty > 0)) bad(`repetition_penalty must be > 0, got ${c.repetition_penalty}`);
  if (!PENALTY_MODES.includes(c.penalty_mode)) bad(`penalty_mode must be one of ${PENALTY_MODES.join(', ')}, got ${pyRepr(c.penalty_mode)}`);
  if (c.penalty_window !== null && !(c.penalty_window >= 1)) bad(`penalty_window must be >= 1, got ${c.penalty_window}`);
  if (!(Number.isInteger(c.max_tokens) && c.max_tokens >= 0)) bad(`max_tokens must be an integer >= 0, got ${c.max_tokens}`);
  c.ban = Object.freeze(Array.from(c.ban || []));
  c.stop = Object.freeze(Array.from(c.stop || []));
  if (c.stop.some((s) => typeof s !== 'string' || !s)) bad('stop strings must be non-empty');
  if (c.seed !== null && !(Number.isInteger(c.seed) && c.seed >= 0 && c.seed <= 0xffffffff)) bad(`seed must be an integer from 0 to 2**32 - 1, got ${c.seed}`);
  if (c.random !== null && typeof c.random !== 'function') bad('random must be a function returning a number in [0, 1)');
  return Object.freeze(c);
}

const f32 = Math.fround;

/** Turns logits [V] into a token id, holding the random state of one generation. */
export class Sampler {
  /** @param {ReturnType<typeof samplingConfig>} config @param {{tokens: readonly string[], size: number}} vocab */
  constructor(config, vocab) {
    this.config = config;
    const ban = new Set(config.ban);
    this.banned = new Uint8Array(vocab.size);                          // [V] 1 = never produced
    if (ban.size) vocab.tokens.forEach((t, i) => { if (ban.has(t)) this.banned[i] = 1; });
    /** @type {number[]} allowed token ids */
    this.valid = [];
    for (let i = 0; i < vocab.size; i++) if (!this.banned[i]) this.valid.push(i);
    if (!this.valid.length) throw new MofError('every token of the vocabulary is banned');
    if (config.random) {
      this.random = config.random;
    } else {
      const rng = new RandomState(config.seed ?? freshSeed());
      this.random = () => rng.randomSample();
    }
  }

  /** Repetition penalty on each distinct recent token (a float32 copy). */
  penalize(logits, recent) {
    const out = Float32Array.from(logits);
    const p = this.config.repetition_penalty;
    if (p !== 1.0 && recent.length) {
      const p32 = f32(p);
      for (const i of new Set(recent)) {
        const v = out[i];
        out[i] = this.config.penalty_mode === 'reference' || v > 0 ? v / p32 : v * p32;
      }
    }
    return out;
  }

  /** The distribution the next token is drawn from (after every filter), float32 [V]. */
  probabilities(logits, recent) {
    const c = this.config;
    const penalized = this.penalize(logits, recent);
    const T = f32(c.temperature);
    let x = new Float32Array(penalized.length);
    let finite = true;
    for (let i = 0; i < x.length; i++) {
      x[i] = penalized[i] / T;
      if (!Number.isFinite(x[i])) finite = false;
    }
    if (!finite) {           // logits / T overflows float32: (logits - max) / T in float64
      const m = max(penalized);
      for (let i = 0; i < x.length; i++) x[i] = (penalized[i] - m) / c.temperature;
    }
    const m = max(x);
    let probs = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) probs[i] = Math.exp(f32(x[i] - m));
    normalize(probs);
    if (c.top_k && c.top_k < probs.length) {
      const kth = Float32Array.from(probs).sort()[probs.length - c.top_k];
      for (let i = 0; i < probs.length; i++) if (!(probs[i] >= kth)) probs[i] = 0;
      normalize(probs);
    }
    if (c.top_p < 1.0) {
      nucleus(probs, c.top_p);
      normalize(probs);
    }
    if (c.min_p > 0) {
      const floor = f32(max(probs) * f32(c.min_p));
      for (let i = 0; i < probs.length; i++) if (!(probs[i] >= floor)) probs[i] = 0;
      normalize(probs);
    }
    return probs;
  }

  /** @param {Float32Array} logits [V] @param {number[]} recent ids the penalty looks at @returns {number} */
  sample(logits, recent) {
    if (this.config.temperature === 0) {                              // greedy
      const x = this.penalize(logits, recent);
      for (let i = 0; i < x.length; i++) if (this.banned[i]) x[i] = -Infinity;
      return argmax(x);
    }
    const probs = this.probabilities(logits, recent);
    const valid = this.valid;
    const p = valid.length < probs.length ? Float32Array.from(valid, (i) => probs[i]) : probs;
    const total = sum32(p);
    if (!(total > 0)) {            // every kept token is banned: the likeliest allowed one
      const pen = this.penalize(logits, recent);
      return valid[argmax(Float32Array.from(valid, (i) => pen[i]))];
    }
    return valid[draw(this.random(), p, total)];
  }
}

function max(a) {
  let m = -Infinity;
  for (let i = 0; i < a.length; i++) if (a[i] > m || Number.isNaN(a[i])) m = a[i];
  return m;
}

/** The first index of the largest value (numpy's argmax). */
export function argmax(a) {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/** numpy's float32 sum: pairwise summation in blocks of 8 lanes (close enough: float64 then rounded). */
function sum32(a) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return f32(s);
}

function normalize(probs) {
  const s = sum32(probs);
  for (let i = 0; i < probs.length; i++) probs[i] = probs[i] / s;
}

/**
 * The reference's top-p cut, in place (runtime/sampling.py nucleus): order by probability,
 * descending, and drop every token whose float32 cumulative probability exceeds top_p (keeping the first).
 */
export function nucleus(probs, topP) {
  const desc = Float32Array.from(probs).sort().reverse();
  const limit = f32(topP);
  let acc = 0;
  let i = -1;
  for (let k = 0; k < desc.length; k++) {
    acc = f32(acc + desc[k]);
    if (acc > limit && k > 0) { i = k; break; }
  }
  if (i < 0) return;
  if (desc[i - 1] !== desc[i]) {
    const keep = desc[i - 1];
    for (let k = 0; k < probs.length; k++) if (probs[k] < keep) probs[k] = 0;
    return;
  }
  // a tie at the cut: which of the equal probabilities the reference keeps depends on its (unstable)
  // argsort; here the higher ids go first. As rare as the Python runtime's own fallback to argsort.
  const order = Array.from(probs.keys()).sort((a, b) => probs[a] - probs[b] || a - b).reverse();
  acc = 0;
  const remove = [];
  order.forEach((idx, k) => {
    acc = f32(acc + probs[idx]);
    if (k > 0 && acc > limit) remove.push(idx);
  });
  for (const idx of remove) probs[idx] = 0;
}

/**
 * numpy's choice(len(p), p=p/total): the cdf of p/total (float32) summed in float64, normalised by
 * its last entry, searched (side right) for the uniform draw `u`.
 */
export function draw(u, p, total) {
  const cdf = new Float64Array(p.length);
  let acc = 0;
  for (let i = 0; i < p.length; i++) {
    acc += f32(p[i] / total);
    cdf[i] = acc;
  }
  const last = cdf[cdf.length - 1];
  let lo = 0;
  let hi = cdf.length;
  while (lo < hi) {                           // first index with cdf / last > u
    const mid = (lo + hi) >>> 1;
    if (cdf[mid] / last <= u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
