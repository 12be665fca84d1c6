// The bundle's vocabulary (runtime/vocab.py): id <-> character, as the reference encodes. Text is
// encoded one Unicode code point at a time (as Python iterates a str, not UTF-16 units); the last
// occurrence of a duplicated entry encodes; characters not in the vocabulary encode to '▩''s id.

import { MofError } from './errors.js';

export const UNKNOWN_TOKEN = '\u25a9';
export const MAX_VOCAB_ENTRIES = 1_000_000;

/** Validate a parsed vocabulary: a non-empty flat list of strings. */
export function checkTokenList(obj, source) {
  if (!Array.isArray(obj)) {
    throw new MofError(`${source}: vocabulary must be a list of strings, got ${obj === null ? 'NoneType' : typeof obj}`);
  }
  if (!obj.length) throw new MofError(`${source}: vocabulary is empty`);
  if (obj.length > MAX_VOCAB_ENTRIES) {
    throw new MofError(`${source}: vocabulary has ${obj.length} entries (limit ${MAX_VOCAB_ENTRIES})`);
  }
  obj.forEach((tok, i) => {
    if (typeof tok !== 'string') throw new MofError(`${source}: vocabulary entry ${i} is ${typeof tok}, expected a string`);
  });
  return obj.slice();
}

export class Vocabulary {
  /** @param {string[]} tokens id -> token */
  constructor(tokens) {
    this.tokens = Object.freeze(checkTokenList(tokens, 'vocabulary'));
    /** @type {Map<string, number>} token -> id (last occurrence wins) */
    this.ids = new Map();
    this.tokens.forEach((t, i) => this.ids.set(t, i));
    this.unknownId = this.ids.get(UNKNOWN_TOKEN) ?? 0;
  }

  get size() {
    return this.tokens.length;
  }

  /** @param {string} text @returns {number[]} one id per code point */
  encode(text) {
    const out = [];
    for (const c of text) {
      const id = this.ids.get(c);
      out.push(id === undefined ? this.unknownId : id);
    }
    return out;
  }

  /** @param {Iterable<number>} ids */
  decode(ids) {
    const n = this.tokens.length;
    let s = '';
    for (const i of ids) {
      if (!Number.isInteger(i) || i < 0 || i >= n) throw new MofError(`token id ${i} is outside the vocabulary [0, ${n})`);
      s += this.tokens[i];
    }
    return s;
  }
}

/** The last `n` code points of `text` (Python's text[-n:]). */
export function lastChars(text, n) {
  if (n <= 0) return '';
  if (text.length <= n) return text;                 // fewer UTF-16 units than n: fewer code points too
  let i = text.length;
  for (let k = 0; k < n && i > 0; k++) {
    i -= 1;
    const c = text.charCodeAt(i);
    if (c >= 0xdc00 && c <= 0xdfff && i > 0) {
      const h = text.charCodeAt(i - 1);
      if (h >= 0xd800 && h <= 0xdbff) i -= 1;
    }
  }
  return text.slice(i);
}

/** Number of code points of `text` (Python's len). */
export function charCount(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!(c >= 0xdc00 && c <= 0xdfff && i > 0 && text.charCodeAt(i - 1) >= 0xd800 && text.charCodeAt(i - 1) <= 0xdbff)) n++;
  }
  return n;
}
