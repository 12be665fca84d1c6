// Reading a bundle (runtime/bundle.py, runtime/manifest.py): the manifest's format and version, the
// listing's safety (plain file names only), every file's size and sha256 on the very bytes used.
// Where the bytes come from is a *source*: a directory in Node (node.js), URLs in a browser (web.js).

import { BundleError, MofError, pyRepr } from './errors.js';
import { FORMS } from './chat.js';
import { sha256 } from './sha256.js';

export const FORMAT = 'mof-bundle';
export const FORMAT_VERSION = 2;   // what this mof reads; format 1: mof-quantize --upgrade
export const READABLE_VERSIONS = Object.freeze([FORMAT_VERSION]);
export const MANIFEST_FILE = 'manifest.json';
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const PRECISIONS = Object.freeze(['fp32', 'int8', 'int4']);
export const GRAPH_STEP = 'step';
export const GRAPH_CHUNK = 'chunk';
export const GRAPH_DECODE = 'decode';

/**
 * Where a bundle's bytes come from.
 * @typedef {object} BundleSource
 * @property {string} where                                  the directory or base URL (starts every message)
 * @property {(name: string) => string} path                 where/name, for messages
 * @property {() => Promise<string>} manifestText            manifest.json's text; BundleError when absent
 * @property {(name: string, onBytes?: (n: number) => void) => Promise<Uint8Array>} read   a listed file's bytes
 * @property {(name: string) => Promise<number>} [stat]      its size, after the checks a directory allows
 *                                                           (regular file, no link); absent for URLs
 */

/** A bundle may only reference files directly inside itself. */
export function isPlainName(name) {
  return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !name.includes('/') &&
    !name.includes('\\') && !name.includes('\0') && !name.includes(':');
}

/** Parse and check manifest.json (format and version), as read_manifest does. */
export async function readManifest(source) {
  const text = await source.manifestText();
  const path = source.path(MANIFEST_FILE);
  if (text.length > MAX_MANIFEST_BYTES) throw new BundleError(`${path} is ${text.length} bytes (limit ${MAX_MANIFEST_BYTES})`);
  let manifest;
  try {
    manifest = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new BundleError(`${path} is not valid JSON (${String(e.message).split('\n')[0]})`);
  }
  if (manifest === null || typeof manifest !== 'object' || Array.isArray(manifest) || manifest.format !== FORMAT) {
    throw new BundleError(`${path} is not a ${FORMAT} manifest`);
  }
  const version = manifest.format_version;
  if (READABLE_VERSIONS.includes(version)) return manifest;
  if (Number.isInteger(version) && version > 0 && version < FORMAT_VERSION) {
    throw new BundleError(`${source.where} is in bundle format ${version}, which this mof no longer runs; ` +
      `upgrade it with: mof-quantize --upgrade ${source.where}`);
  }
  throw new BundleError(`${path} has format_version ${pyRepr(version ?? null)}; this mof reads version ` +
    `${FORMAT_VERSION} (update mof, or re-export the bundle with this one)`);
  return manifest;
}

/** The listing's structure, as verify_bundle checks it (names, hashes, graph and weights files). */
export function checkListing(manifest, where) {
  const files = manifest.files;
  if (!files || typeof files !== 'object' || Array.isArray(files) || !Object.keys(files).length) {
    throw new BundleError(`${where}: manifest lists no files`);
  }
  for (const [name, rec] of Object.entries(files)) {
    if (!isPlainName(name)) throw new BundleError(`${where}: manifest names an unsafe file path ${pyRepr(name)}`);
    if (!rec || typeof rec !== 'object' || typeof rec.sha256 !== 'string') {
      throw new BundleError(`${where}: manifest entry for ${name} has no sha256`);
    }
  }
  const graphs = manifest.graphs;
  if (!graphs || typeof graphs !== 'object' || Array.isArray(graphs)) throw new BundleError(`${where}: manifest has no 'graphs' section`);
  for (const [g, entry] of Object.entries(graphs)) {
    if (!entry || typeof entry !== 'object') throw new BundleError(`${where}: graph ${pyRepr(g)} is not described by an object`);
    for (const key of PRECISIONS) {
      const f = entry[key];
      if (f !== undefined && f !== null && (typeof f !== 'string' || !(f in files))) {
        throw new BundleError(`${where}: graph ${g}.${key} file ${pyRepr(f)} is not in the manifest's files`);
      }
    }
  }
  const weights = manifest.weights ?? {};
  if (typeof weights !== 'object' || Object.values(weights).some((f) => typeof f !== 'string' || !(f in files))) {
    throw new BundleError(`${where}: manifest's 'weights' must name files of the bundle, got ${JSON.stringify(weights)}`);
  }
}

/** Check a file's bytes against its manifest record (size, then sha256). */
export async function checkBytes(where, manifest, name, data) {
  const rec = manifest.files[name];
  if (data.length !== rec.bytes) throw new BundleError(`${where}: ${name} is ${data.length} bytes, manifest says ${pyRepr(rec.bytes ?? null)}`);
  if ((await sha256(data)) !== rec.sha256) throw new BundleError(`${where}: ${name} does not match its sha256 in the manifest`);
}

/** The bytes of a listed file, verified as they are read (read_verified). */
export async function readVerified(source, manifest, name, { verify = true, onBytes } = {}) {
  const files = manifest.files || {};
  if (!isPlainName(name) || !(name in files)) throw new BundleError(`${source.where}: ${pyRepr(name)} is not a file of this bundle`);
  const data = await source.read(name, onBytes);
  if (verify) await checkBytes(source.where, manifest, name, data);
  return data;
}

/** Every listed file present with its size and sha256 (verify_bundle), except `later`, hashed when read. */
export async function verifyAll(source, manifest, later = new Set()) {
  for (const [name, rec] of Object.entries(manifest.files)) {
    const size = await source.stat(name);
    if (size !== rec.bytes) throw new BundleError(`${source.where}: ${name} is ${size} bytes, manifest says ${pyRepr(rec.bytes ?? null)}`);
    if (!later.has(name)) await checkBytes(source.where, manifest, name, await source.read(name));
  }
}

/** The manifest's lookups (runtime/manifest.py). */
export const lookups = {
  graphFile(manifest, name, precision) {
    const entry = (manifest.graphs || {})[name];
    const f = entry && typeof entry === 'object' ? entry[precision] : undefined;
    return typeof f === 'string' ? f : null;
  },
  graph(manifest, name, where) {
    const entry = (manifest.graphs || {})[name];
    if (!entry || typeof entry !== 'object' || !Object.keys(entry).length) {
      throw new BundleError(`${where}: bundle has no ${pyRepr(name)} graph; re-export it with this version of mof-export`);
    }
    return entry;
  },
  weightsFile(manifest, precision) {
    const w = manifest.weights;
    const f = w && typeof w === 'object' ? w[precision] : undefined;
    return typeof f === 'string' ? f : null;
  },
  /** The graphs generation runs: the decode graph, else step and chunk. */
  decodingGraphs(manifest, precision) {
    if (lookups.graphFile(manifest, GRAPH_DECODE, precision)) return [GRAPH_DECODE];
    return [GRAPH_STEP, GRAPH_CHUNK];
  },
  recommendedMode(manifest) {
    return manifest.recommended_mode || 'exact';
  },
  recommendedRefillEvery(manifest) {
    const r = manifest.recommended_refill_every;
    return Number.isInteger(r) && r >= 1 ? r : 1;
  },
  form(manifest, where) {
    const form = manifest.form || 'chat';
    if (!FORMS.includes(form)) throw new BundleError(`${where}: manifest form ${pyRepr(form)} is not one of ${FORMS.join(', ')}`);
    return form;
  },
  vocabFile(manifest, where) {
    const name = manifest.vocab && manifest.vocab.file;
    if (typeof name !== 'string' || !(name in (manifest.files || {}))) throw new BundleError(`${where}: manifest names no verified vocabulary file`);
    return name;
  },
  /** What a saved state belongs to: the fp32 step graph's sha256 and (format 2) its weights file's. */
  networkIdentity(manifest) {
    const sha = (n) => ((manifest.files || {})[n] || {}).sha256 || '';
    const weights = lookups.weightsFile(manifest, 'fp32');
    return weights ? `${sha('step.onnx')}/${sha(weights)}` : sha('step.onnx');
  },
};

const CONFIG_FIELDS = ['vocab_size', 'embed_dim', 'rnn_units', 'router_units', 'rnn_layers', 'trans_layers',
  'num_heads', 'ffn_dim', 'max_positions', 'trans_window', 'window'];
const OPTIONAL = { family: 't6', trans_layers_2: 0, ffn_dim_2: 0, embed_gru: true };
const MAY_BE_ZERO = new Set(['trans_layers', 'trans_layers_2', 'ffn_dim_2']);

/** The model section, checked as ModelConfig checks it (the hyper-parameters decoding reads). */
export function modelConfig(manifest, where) {
  const model = manifest.model;
  if (!model || typeof model !== 'object') throw new BundleError(`${where}: manifest has no 'model' section`);
  const missing = CONFIG_FIELDS.filter((n) => !(n in model));
  if (missing.length) throw new MofError(`model config is missing ${missing.join(', ')}`);
  const c = { ...OPTIONAL };
  for (const n of [...CONFIG_FIELDS, ...Object.keys(OPTIONAL)]) if (n in model) c[n] = model[n];
  for (const n of [...CONFIG_FIELDS, 'trans_layers_2', 'ffn_dim_2']) {
    if (!Number.isInteger(c[n])) throw new MofError(`model.${n} must be an integer, got ${pyRepr(c[n])}`);
    const low = MAY_BE_ZERO.has(n) ? 0 : 1;
    if (c[n] < low) throw new MofError(`model.${n} must be >= ${low}, got ${c[n]}`);
  }
  if (!['t6', 't7'].includes(c.family)) throw new MofError(`model.family must be one of t6, t7, got ${pyRepr(c.family)}`);
  return Object.freeze(c);
}
