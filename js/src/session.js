// A conversation with a model (runtime/chat_session.py): templates, history, and (stream mode) the
// recurrent state. In stream mode each turn's prompt normally extends what the model has already
// read, so only the new part is read; anything else (raw form, a stopped reply) re-reads the prompt
// from a zero state. saveBytes()/loadBytes() write and read mof-run's --save-state files.

import { Conversation } from './chat.js';
import { MofError, pyRepr } from './errors.js';
import { StreamDecoder, resolveDecoding, API } from './decoder.js';
import { Generator } from './generate.js';
import { State } from './model.js';
import { samplingConfig } from './sampling.js';
import { decodeNpz, encodeNpz } from './npz.js';
import { lastChars } from './vocab.js';

export const SAVE_FORMAT = 'mof-session';
export const SAVE_VERSION = 1;
export const STATE_PREFIX = 'state.';
export const MAX_SAVE_BYTES = 64 * 1024 * 1024;

export class ChatSession {
  /**
   * @param {import('./model.js').Model} model @param {object} [sampling] SamplingOptions
   * @param {{mode?: string|null, form?: string|null, refillEvery?: number|null}} [options] defaults: the bundle's
   */
  constructor(model, sampling = {}, { mode = null, form = null, refillEvery = null } = {}) {
    this.model = model;
    this.sampling = samplingConfig(sampling);
    this.decoding = resolveDecoding(model, mode, refillEvery);
    this.conversation = new Conversation(form || model.form);
    this.decoder = null;           // stream mode: what the model has read so far ...
    this.consumed = '';            // ... as text
  }

  get mode() { return this.decoding.mode; }
  get refillEvery() { return this.decoding.refillEvery; }
  get state() { return this.decoder ? this.decoder.state : null; }

  clear() {
    this.conversation.clear();
    this.decoder = null;
    this.consumed = '';
  }

  /** Decode later turns in `mode` with R `refillEvery` (null: the bundle's); the history stays. */
  setDecoding(mode, refillEvery, spelling = API) {
    this.decoding = resolveDecoding(this.model, mode, refillEvery, spelling);
    this.decoder = null;
    this.consumed = '';
    return this.decoding;
  }

  /** Start the reply to `text`: iterate (or run()) the Generator, then call finish(). */
  turn(text, sampling = null) {
    return this.continueText(this.conversation.prompt(text), sampling);
  }

  /** `sampling`: this turn's options instead of the session's (e.g. a new seed). */
  continueText(prompt, sampling = null) {
    const base = sampling ? samplingConfig({ ...this.sampling, ...sampling }) : this.sampling;
    const sp = samplingConfig({ ...base, stop: [...this.conversation.stops, ...base.stop] });
    if (this.mode === 'stream' && this.decoder && prompt.length > this.consumed.length && prompt.startsWith(this.consumed)) {
      return new Generator(this.model, prompt.slice(this.consumed.length), sp, { decoder: this.decoder, history: this.consumed });
    }
    return new Generator(this.model, prompt, sp, { mode: this.mode, refillEvery: this.refillEvery });
  }

  /** Record the reply; a stopped reply (or exact mode) keeps no state. */
  finish(gen, interrupted = gen.stats.stoppedBy === 'aborted') {
    this.conversation.addReply(gen.output);
    if (this.mode === 'stream' && !interrupted) {
      this.decoder = gen.decoder;
      this.consumed = gen.text;
    } else {
      this.decoder = null;
      this.consumed = '';
    }
  }

  /** The conversation as mof-run --save-state writes it (an .npz: meta + state arrays). */
  saveBytes() {
    const meta = { format: SAVE_FORMAT, version: SAVE_VERSION, model: this.model.networkIdentity,
      form: this.conversation.form, history: this.conversation.history, consumed: this.consumed,
      has_state: this.state !== null, since_refill: 0 };
    const arrays = {};
    if (this.state) {
      const snap = this.decoder.snapshot();
      meta.refill_every = snap.refillEvery;
      meta.since_refill = snap.sinceRefill;
    }
    arrays.meta = { dtype: 'unicode', shape: [], data: pyJson(meta) };
    if (this.state) {
      for (const f of this.model.stateFields) {
        arrays[STATE_PREFIX + f.field] = { dtype: 'float32', shape: f.shape.map((d) => (d === 'batch' ? 1 : d)), data: this.state.tensors[f.field] };
      }
      arrays[STATE_PREFIX + 'position'] = { dtype: 'int64', shape: [1], data: BigInt64Array.from([BigInt(this.state.position)]) };
    }
    return encodeNpz(arrays);
  }

  /** Resume a conversation saved by saveBytes or mof-run; `where` names the file in messages. */
  loadBytes(bytes, where = 'the file') {
    if (bytes.length > MAX_SAVE_BYTES) throw new MofError(`${where} is too large to be a saved mof conversation`);
    let arrays;
    let meta;
    try {
      arrays = decodeNpz(bytes);
      meta = JSON.parse(arrays.meta.data);
    } catch (e) {
      throw new MofError(`${where} is not a saved mof conversation (${e.name === 'MofError' ? e.message : e.name})`);
    }
    if (!meta || typeof meta !== 'object' || meta.format !== SAVE_FORMAT) throw new MofError(`${where} is not a saved mof conversation`);
    if (meta.version !== SAVE_VERSION) throw new MofError(`${where} has version ${meta.version}; this mof reads ${SAVE_VERSION}`);
    if (meta.model !== this.model.networkIdentity) throw new MofError(`${where} was saved with another model; start a new conversation`);
    if (meta.form !== this.conversation.form) throw new MofError(`${where} holds a '${meta.form}' conversation; pass --form ${meta.form}`);
    const consumed = String(meta.consumed ?? '');
    let snapshot = null;
    if (meta.has_state) {
      let state;
      try {
        state = this.stateFromArrays(arrays);
      } catch (e) {
        throw new MofError(`${where}: ${e.message}`);
      }
      const R = meta.refill_every;
      const since = meta.since_refill;
      if (!Number.isInteger(R) || R < 1) throw new MofError(`${where}: bad refill_every ${pyRepr(R ?? null)}`);
      if (!Number.isInteger(since) || since < 0) throw new MofError(`${where}: bad since_refill ${since}`);
      const ids = this.model.vocab.encode(lastChars(consumed, this.model.config.window));
      if (consumed) snapshot = { state, ids, sinceRefill: since, refillEvery: R };
    }
    this.conversation.history = String(meta.history ?? '');
    if (this.mode === 'stream' && snapshot) {
      this.decoder = StreamDecoder.restore(this.model, snapshot, this.refillEvery);
      this.consumed = consumed;
    } else {
      this.decoder = null;
      this.consumed = '';
    }
  }

  stateFromArrays(arrays) {
    const names = [...this.model.stateFields.map((f) => f.field), 'position'];
    const got = Object.keys(arrays).filter((k) => k.startsWith(STATE_PREFIX)).map((k) => k.slice(STATE_PREFIX.length)).sort();
    if (JSON.stringify(got) !== JSON.stringify([...names].sort())) {
      throw new MofError(`saved state has fields ${JSON.stringify(got)}, expected ${JSON.stringify([...names].sort())}`);
    }
    const tensors = {};
    for (const f of this.model.stateFields) {
      const a = arrays[STATE_PREFIX + f.field];
      const shape = f.shape.map((d) => (d === 'batch' ? 1 : d));
      if (a.dtype !== 'float32' || JSON.stringify(a.shape) !== JSON.stringify(shape)) {
        throw new MofError(`state.${f.field} is (${a.shape}, ${a.dtype}), expected (${shape}, float32)`);
      }
      tensors[f.field] = a.data;
    }
    const pos = arrays[STATE_PREFIX + 'position'];
    if (pos.dtype !== 'int64' || JSON.stringify(pos.shape) !== '[1]') throw new MofError('state.position is not int64 [1]');
    return new State(Number(pos.data[0]), tensors);
  }
}

/** JSON as Python's json.dumps(..., ensure_ascii=False) writes it (", " and ": " separators). */
function pyJson(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return '[' + value.map(pyJson).join(', ') + ']';
  if (typeof value === 'object') return '{' + Object.entries(value).map(([k, v]) => JSON.stringify(k) + ': ' + pyJson(v)).join(', ') + '}';
  return JSON.stringify(value);
}
