// Decoders (runtime/decoder.py, runtime/decoding.py): the one owner of how a sequence is read.
//
// The refill rule (stream mode; docs/bundle-format.md): W the window, R = refillEvery (1 <= R <= W),
// K = W - R + 1. A feed is read by a refill — the chunk graph on the last K ids from a zero state —
// when nothing has been read yet or when stepping it would make more than R - 1 tokens stepped since
// the last refill; otherwise it is stepped from the recurrent state. Exact mode: the network over the
// last W ids for every feed.

import { DecodingError, MofError, pyRepr } from './errors.js';

export const MODES = Object.freeze(['stream', 'exact']);

/** How a caller's user names the two settings, so a message says what to change. */
export const API = Object.freeze({ mode: 'mode', refillEvery: 'refill_every', toStream: 'ask for "mode": "stream"' });
export const CLI = Object.freeze({ mode: '--mode', refillEvery: '--refill-every', toStream: 'use --mode stream' });

/**
 * `mode` and `refillEvery` as given (null: the bundle's recommendation), checked as resolve_decoding does.
 * @returns {{mode: string, refillEvery: number|null, chosen: boolean}}
 */
export function resolveDecoding(model, mode = null, refillEvery = null, spelling = API) {
  if (mode !== null && mode !== undefined && !MODES.includes(mode)) {
    throw new DecodingError(`${spelling.mode} must be one of ${MODES.join(', ')}, got ${pyRepr(mode)}`, 'mode');
  }
  const resolved = mode || model.recommendedMode;
  const given = refillEvery !== null && refillEvery !== undefined;
  if (given && resolved !== 'stream') {
    throw new DecodingError(`${spelling.refillEvery} applies to stream mode only, not exact mode; ${spelling.toStream}`, 'refill_every');
  }
  if (resolved === 'exact') return { mode: 'exact', refillEvery: null, chosen: !!mode };
  const W = model.config.window;
  if (!given) return { mode: 'stream', refillEvery: model.recommendedRefillEvery, chosen: !!mode };
  if (!Number.isInteger(refillEvery) || refillEvery < 1 || refillEvery > W) {
    throw new DecodingError(`${spelling.refillEvery} must be an integer from 1 to the window W = ${W}, got ${pyRepr(refillEvery)}`, 'refill_every');
  }
  return { mode: 'stream', refillEvery, chosen: true };
}

/** "stream mode, refill every 16" or "exact mode". */
export function describeDecoding(d) {
  return d.mode === 'stream' ? `stream mode, refill every ${d.refillEvery}` : 'exact mode';
}

/** The refill rule: are the next nNew ids read by a refill (or by causal steps)? */
export function needsRefill(nNew, sinceRefill, hasState, refillEvery) {
  return !hasState || sinceRefill + nNew > refillEvery - 1;
}

/**
 * A stream decoder's reading, frozen: what saved conversations keep.
 * @typedef {{state: import('./model.js').State, ids: number[], sinceRefill: number, refillEvery: number}} DecoderSnapshot
 */

/** Stream mode: a recurrent state, a causal step per token, a refill every R tokens. */
export class StreamDecoder {
  /**
   * @param {import('./model.js').Model} model @param {number|null} [refillEvery] R (null: the bundle's)
   * @param {{state?: any, ids?: number[], sinceRefill?: number}} [from] continue what an earlier decoder read
   */
  constructor(model, refillEvery = null, { state = null, ids = [], sinceRefill = 0 } = {}) {
    this.model = model;
    this.mode = 'stream';
    this.refillEvery = resolveDecoding(model, 'stream', refillEvery).refillEvery;
    const W = model.config.window;
    this.keep = W - this.refillEvery + 1;                       // K
    if (state && !ids.length) throw new MofError('continuing from a state needs the ids it has read (refills re-read them)');
    this.state = state;
    this.ids = ids.slice(-W);                                   // the last W ids read
    this.sinceRefill = sinceRefill;
    if (this.position + this.refillEvery - 1 - this.sinceRefill > W) this.sinceRefill = this.refillEvery - 1;
    this.refills = 0;                                           // refills this decoder made
    /** @type {Float32Array|null} logits [V] after the last id read */
    this.logits = null;
  }

  get position() {
    return this.state ? this.state.position : 0;
  }

  /** Read `ids` after everything read so far; the logits [V] after the last. */
  async feed(ids) {
    if (!ids.length) {
      if (!this.logits) throw new MofError('nothing has been read yet');
      return this.logits;
    }
    const seen = this.ids.concat(ids);
    const refill = needsRefill(ids.length, this.sinceRefill, this.state !== null, this.refillEvery);
    const { logits, state } = refill ? await this.model.refill(seen.slice(-this.keep)) : await this.model.step(ids, this.state);
    if (refill) this.refills += 1;
    this.sinceRefill = refill ? 0 : this.sinceRefill + ids.length;
    this.state = state;
    this.ids = seen.slice(-this.model.config.window);
    this.logits = logits;
    return logits;
  }

  /** @returns {DecoderSnapshot} */
  snapshot() {
    if (!this.state) throw new MofError('nothing has been read yet');
    return Object.freeze({ state: this.state, ids: this.ids.slice(), sinceRefill: this.sinceRefill, refillEvery: this.refillEvery });
  }

  /** A decoder that goes on from `snapshot` (at its R unless another is given). */
  static restore(model, snapshot, refillEvery = null) {
    return new StreamDecoder(model, refillEvery ?? snapshot.refillEvery,
      { state: snapshot.state, ids: snapshot.ids, sinceRefill: snapshot.sinceRefill });
  }
}

/** Exact mode, the reference's loop: the network over the last W ids, for every token. */
export class ExactDecoder {
  constructor(model, { ids = [] } = {}) {
    this.model = model;
    this.mode = 'exact';
    this.refillEvery = 1;
    this.state = null;
    this.sinceRefill = 0;
    this.refills = 0;
    this.ids = ids.slice(-model.config.window);
    this.logits = null;
  }

  async feed(ids) {
    if (!ids.length) {
      if (!this.logits) throw new MofError('nothing has been read yet');
      return this.logits;
    }
    const seen = this.ids.concat(ids).slice(-this.model.config.window);
    this.logits = await this.model.exactLogits(seen);
    this.ids = seen;
    return this.logits;
  }
}

/** A decoder for `mode` and R, resolved by resolveDecoding. */
export function makeDecoder(model, mode = null, refillEvery = null) {
  const d = resolveDecoding(model, mode, refillEvery);
  return d.mode === 'stream' ? new StreamDecoder(model, d.refillEvery) : new ExactDecoder(model);
}
