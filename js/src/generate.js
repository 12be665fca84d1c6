// Text generation (runtime/generate.py). As in the reference, the text is the source of truth: each
// generated token's string is appended to the text, and what the model reads next is that string
// re-encoded one character at a time. The repetition penalty looks at the distinct ids of the last
// W characters.
//
//   const gen = new Generator(model, '床前明月光，', { seed: 1 });
//   for await (const piece of gen) process.stdout.write(piece);
//   await gen.run({ onText: (piece) => ..., signal });              // or with a callback and an AbortSignal

import { MofError } from './errors.js';
import { makeDecoder } from './decoder.js';
import { Sampler, samplingConfig } from './sampling.js';
import { charCount, lastChars } from './vocab.js';

/**
 * Let the host handle its events (a Stop click, a repaint) between tokens: onnxruntime-web's
 * single-threaded run resolves without leaving the microtask queue, so without this a page could
 * not stop a reply, nor show it, until it ended. A macrotask, without setTimeout's 4 ms clamp.
 */
export function yieldToHost() {
  // not scheduler.yield(): its continuation goes before the page's other tasks, measured to starve them
  if (typeof globalThis.setImmediate === 'function') return new Promise((r) => globalThis.setImmediate(r));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/** Length of the longest suffix of `text` that is a proper prefix of a stop string. */
export function holdback(text, stops) {
  let best = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
      if (text.endsWith(s.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}

/** The text side of one generation, model-free: sampling, the text, stop strings (Python's Generation). */
export class Generation {
  constructor(vocab, prompt, sampling, penaltyWindow, history = '') {
    this.vocab = vocab;
    this.sampling = sampling;
    this.sampler = new Sampler(sampling, vocab);
    this.penaltyWindow = sampling.penalty_window || penaltyWindow;
    this.text = history + prompt;            // everything the model has read (or will)
    this.output = '';                        // generated text (stop string excluded)
    this.generated = 0;                      // tokens sampled
    /** @type {number[]} the ids sampled, in order */
    this.ids = [];
    this.stoppedBy = sampling.max_tokens ? '' : 'max_tokens';   // "stop", "max_tokens", "aborted"
    this.pending = '';                       // generated but not yet released (may start a stop)
    this.unread = prompt;                    // text the model has not read yet
  }

  get done() {
    return !!this.stoppedBy;
  }

  /** The ids of the text the model has not read yet (then counted as read). */
  takeUnread() {
    const ids = this.unread ? this.vocab.encode(this.unread) : [];
    this.unread = '';
    return ids;
  }

  /** Sample the next token from `logits`; returns the text that can be shown now. */
  advance(logits) {
    if (this.done) throw new MofError('the generation is over');
    const sp = this.sampling;
    const recent = this.vocab.encode(lastChars(this.text, this.penaltyWindow));
    const token = this.sampler.sample(logits, recent);
    this.ids.push(token);
    const piece = this.vocab.tokens[token];
    this.text += piece;
    this.unread = piece;
    this.generated += 1;
    this.pending += piece;
    let hit = -1;
    for (const s of sp.stop) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (hit < 0 || i < hit)) hit = i;
    }
    if (hit >= 0) {
      this.pending = this.pending.slice(0, hit);
      this.stoppedBy = 'stop';
    } else if (this.generated >= sp.max_tokens) {
      this.stoppedBy = 'max_tokens';
    }
    const keep = this.done ? 0 : holdback(this.pending, sp.stop);
    const release = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    this.output += release;
    return release;
  }
}

export class Generator {
  /**
   * @param {import('./model.js').Model} model @param {string} prompt
   * @param {import('./sampling.js').SamplingOptions|object} [sampling]
   * @param {{mode?: string|null, refillEvery?: number|null, decoder?: any, history?: string}} [options]
   *   mode and R default to the bundle's recommendation; `decoder`: go on from one that has read `history`
   */
  constructor(model, prompt, sampling = {}, { mode = null, refillEvery = null, decoder = null, history = '' } = {}) {
    if (!decoder) decoder = makeDecoder(model, mode, refillEvery);
    else if (decoder.model !== model) throw new MofError('the decoder belongs to another model');
    if (!prompt && !decoder.logits) throw new MofError('the prompt is empty: give at least one character');
    this.model = model;
    this.sampling = samplingConfig(sampling);                // checked (a config passes through unchanged)
    this.decoder = decoder;
    this.mode = decoder.mode;
    this.generation = new Generation(model.vocab, prompt, this.sampling, model.config.window, history);
    this.prompt = prompt;
    this.stats = { promptTokens: charCount(prompt), generatedTokens: 0, prefillMs: 0, decodeMs: 0, refills: 0, stoppedBy: '' };
  }

  get output() { return this.generation.output; }
  get text() { return this.generation.text; }
  get ids() { return this.generation.ids; }
  get state() { return this.decoder.state; }
  get sampler() { return this.generation.sampler; }

  /** Decode tokens per second (NaN before any). */
  get tokensPerSecond() {
    return this.stats.decodeMs > 0 ? (1000 * this.stats.generatedTokens) / this.stats.decodeMs : NaN;
  }

  async feed() {
    const before = this.decoder.refills;
    const logits = await this.decoder.feed(this.generation.takeUnread());
    this.stats.refills += this.decoder.refills - before;
    return logits;
  }

  /**
   * The released pieces, as they become safe to show (a stop string is never shown, not even in part).
   * `signal`: an AbortSignal; when it fires the generation ends (stats.stoppedBy "aborted") after the
   * token being computed, and the decoder has then not read the last token. With a signal, the host
   * gets its turn between tokens (yieldToHost), so what would abort can run.
   * @param {{signal?: AbortSignal}} [options]
   */
  async *pieces({ signal } = {}) {
    const gen = this.generation;
    const now = () => globalThis.performance.now();
    const t0 = now();
    let logits = await this.feed();
    const t1 = now();
    this.stats.prefillMs = t1 - t0;
    while (!gen.done) {
      if (signal) await yieldToHost();
      if (signal && signal.aborted) {
        gen.stoppedBy = 'aborted';
        break;
      }
      const release = gen.advance(logits);
      this.stats.generatedTokens = gen.generated;
      this.stats.decodeMs = now() - t1;
      if (release) yield release;
      if (!gen.done) logits = await this.feed();
    }
    this.stats.stoppedBy = gen.stoppedBy;
    if (this.mode === 'stream' && gen.generated && gen.stoppedBy !== 'aborted') await this.feed();   // state in step with the text
    this.stats.decodeMs = now() - t1;
  }

  [Symbol.asyncIterator]() {
    return this.pieces();
  }

  /**
   * Run to the end: `onText(piece, generator)` per released piece. Returns the output.
   * @param {{onText?: (piece: string, gen: Generator) => void, signal?: AbortSignal}} [options]
   */
  async run({ onText, signal } = {}) {
    for await (const piece of this.pieces({ signal })) if (onText) onText(piece, this);
    return this.output;
  }
}
