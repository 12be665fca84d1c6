// Model: a verified bundle and its onnxruntime sessions (runtime/model.py), for one sequence at a
// time (batch 1). The onnxruntime module is the host's: onnxruntime-node (Node, Electron's main
// process) or onnxruntime-web (a browser tab, a renderer), passed in as `ort`.
//
//   const model = await Model.load(source, { ort });               // source: node.js dirSource / web.js urlSource
//   let { logits, state } = await model.refill(ids);               // the chunk graph from a zero state
//   ({ logits, state } = await model.step([id], state));           // the step graph from a state
//   logits = await model.exactLogits(ids);                         // the network over the last W ids

import { BundleError, MofError, pyRepr } from './errors.js';
import { GRAPH_CHUNK, GRAPH_DECODE, GRAPH_STEP, PRECISIONS, checkListing, lookups, modelConfig, readManifest,
  readVerified, verifyAll } from './bundle.js';
import { externalLocations, ProtoError } from './onnxrefs.js';
import { selfCheck } from './selfcheck.js';
import { Vocabulary, checkTokenList } from './vocab.js';

/**
 * The recurrent state after the tokens read so far: named float32 tensors (the manifest's
 * state.fields, batch 1) and the position. Never mutated: every call returns a new one.
 */
export class State {
  /** @param {number} position tokens read into the state @param {Record<string, Float32Array>} tensors field -> data */
  constructor(position, tensors) {
    this.position = position;
    this.tensors = Object.freeze({ ...tensors });
    Object.freeze(this);
  }
}

/**
 * @typedef {object} LoadOptions
 * @property {any} ort                       the onnxruntime module (onnxruntime-node or onnxruntime-web)
 * @property {string} [precision]            "fp32" (default), "int8" or "int4"
 * @property {boolean} [verify]              check sizes and sha256 (default true; never skip it for downloaded files)
 * @property {boolean} [verifyAll]           also every listed file not used (as mof.runtime does; a directory's default)
 * @property {object} [sessionOptions]       merged into onnxruntime's session options
 * @property {(done: number, total: number) => void} [onProgress]   bytes of the used files read so far
 * @property {boolean} [selfCheck]           recompute the bundle's reference logits here first (selfcheck.js):
 *                                           a MofError if they differ; the verdict in model.selfCheckResult
 * @property {{machine: string, flags: string[]}} [cpu]   this CPU, for the self-check's tolerance (Node: read for you)
 */

/** "onnxruntime-node" or "onnxruntime-web": which the host passed (their env says). */
export function ortFlavour(ort) {
  const versions = (ort.env && ort.env.versions) || {};
  return versions.node ? 'onnxruntime-node' : 'onnxruntime-web';
}

/** Batch-1 latency settings, as runtime/model.py session_options. */
function sessionOptions(ort, extra) {
  return {
    executionProviders: [ortFlavour(ort) === 'onnxruntime-node' ? 'cpu' : 'wasm'],
    graphOptimizationLevel: 'all',
    enableCpuMemArena: false,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    ...extra,
  };
}

export class Model {
  /** Prefer Model.load. */
  constructor({ ort, where, manifest, config, vocab, precision, sessions, files }) {
    this.ort = ort;
    this.where = where;                                   // the directory or URL the bundle came from
    this.manifest = manifest;
    this.config = config;                                 // the model section (window W, max_positions P, ...)
    this.vocab = vocab;
    this.precision = precision;
    this.sessions = sessions;                             // graph name -> InferenceSession
    this.files = files;                                   // graph name -> file
    const state = manifest.state || {};
    this.stateFields = state.fields;                      // [{field, input, output, dtype, shape}]
    this.positionInput = state.position_input || 'position';
    this.bundleName = where.replace(/[/\\]+$/, '').split(/[/\\]/).pop();
  }

  get recommendedMode() {
    return lookups.recommendedMode(this.manifest);
  }

  /** Stream decoding's R the export recommends, at most W (1 when unsaid). */
  get recommendedRefillEvery() {
    return Math.min(lookups.recommendedRefillEvery(this.manifest), this.config.window);
  }

  get form() {
    return lookups.form(this.manifest, this.where);
  }

  get networkIdentity() {
    return lookups.networkIdentity(this.manifest);
  }

  /**
   * Verify the bundle, then open its decoding graphs in `precision` (the decode graph, else step and chunk).
   * @param {import('./bundle.js').BundleSource} source @param {LoadOptions} options
   */
  static async load(source, options) {
    const { ort, precision = 'fp32', verify = true, onProgress } = options || {};
    if (!ort || !ort.InferenceSession) throw new MofError('Model.load needs the onnxruntime module: { ort } (onnxruntime-node or onnxruntime-web)');
    if (!PRECISIONS.includes(precision)) throw new MofError(`precision must be one of ${PRECISIONS.join(', ')}, got ${pyRepr(precision)}`);
    const where = source.where;
    const manifest = await readManifest(source);
    const graphs = options.graphs || lookups.decodingGraphs(manifest, precision);
    const files = {};
    for (const name of graphs) {
      files[name] = lookups.graphFile(manifest, name, precision);
      if (files[name] === null) {
        lookups.graph(manifest, name, where);
        if (precision !== 'fp32') {
          const flag = precision === 'int8' ? '' : ` --${precision}`;
          throw new MofError(`${where} has no ${precision} graphs; add them with: mof-quantize${flag} ${where}`);
        }
        throw new BundleError(`${where}: graph ${pyRepr(name)} has no ${precision} file`);
      }
    }
    checkListing(manifest, where);
    const weights = lookups.weightsFile(manifest, precision);
    const vocabFile = lookups.vocabFile(manifest, where);
    const used = [vocabFile, ...Object.values(files), ...(weights ? [weights] : [])];
    if (verify && (options.verifyAll ?? !!source.stat)) await verifyAll(source, manifest, new Set(used));
    const config = modelConfig(manifest, where);
    lookups.form(manifest, where);                        // a bad form is an error now, not mid-chat
    checkStateSection(manifest, where);

    const total = used.reduce((s, f) => s + (manifest.files[f].bytes || 0), 0);
    let done = 0;
    const progress = (n) => { done += n; if (onProgress) onProgress(done, total); };
    const read = (f) => readVerified(source, manifest, f, { verify, onBytes: progress });
    const vocab = readVocabulary(await read(vocabFile), source.path(vocabFile));
    if (vocab.size !== config.vocab_size) {
      throw new BundleError(`${where}: vocabulary has ${vocab.size} entries, model.vocab_size is ${config.vocab_size}`);
    }
    const weightsData = weights ? await read(weights) : null;
    const sessions = {};
    for (const name of graphs) {
      const file = files[name];
      const data = await read(file);
      checkExternalData(data, weights, `${where}: ${file}`);
      const so = sessionOptions(ort, options.sessionOptions);
      if (weights) so.externalData = [{ path: weights, data: weightsData }];
      let session;
      try {
        session = await ort.InferenceSession.create(data, so);
      } catch (e) {
        const lines = String(e && e.message ? e.message : e).split('\n').map((l) => l.trim()).filter(Boolean);
        const why = (lines[0] || 'error').slice(0, 200) + (lines.length > 1 ? ` ... ${lines[lines.length - 1].slice(0, 160)}` : '');
        throw new BundleError(`${where}: cannot load ${file}: ${why}`);
      }
      checkIo(session, lookups.graph(manifest, name, where), `${where.replace(/[/\\]+$/, '').split(/[/\\]/).pop()}/${file}`);
      sessions[name] = session;
    }
    const model = new Model({ ort, where, manifest, config, vocab, precision, sessions, files });
    if (options.selfCheck) {
      model.selfCheckResult = await selfCheck(model, { cpu: options.cpu || null });
      if (!model.selfCheckResult.passed) {
        throw new MofError(`${model.bundleName}: self-check failed: ${model.selfCheckResult.line()}; its logits `
          + 'differ from the export\'s here (mof-check shows each probe)');
      }
    }
    return model;
  }

  /** The state before anything is read. */
  zeroState() {
    const tensors = {};
    for (const f of this.stateFields) tensors[f.field] = new Float32Array(size(f.shape));
    return new State(0, tensors);
  }

  /** One or more ids read causally after `state` (the step graph). @returns {Promise<{logits: Float32Array, state: State}>} */
  async step(ids, state) {
    this.checkIds(ids);
    if (!(state instanceof State)) throw new MofError(`state must be a mof State, got ${typeof state}`);
    const end = state.position + ids.length;
    const P = this.config.max_positions;
    if (end > P) {
      throw new MofError(`position ${end} exceeds the position table (${P}); re-prefill the last ${this.config.window} tokens from a fresh state`);
    }
    const got = await this.run(GRAPH_STEP, ids, state);
    return { logits: got.logits, state: this.stateFrom(got, end) };
  }

  /** Read ids (at most W) from a zero state with the reference's semantics (the chunk graph). */
  async refill(ids) {
    if (ids.length > this.config.window) throw new MofError(`a refill reads at most W = ${this.config.window} tokens, got ${ids.length}`);
    return this.chunk(ids);
  }

  /** The chunk graph on ids (any length within the position table): last logits and the state after them. */
  async chunk(ids) {
    this.checkIds(ids);
    if (ids.length > this.config.max_positions) {
      throw new MofError(`the chunk graph reads at most P = ${this.config.max_positions} tokens, got ${ids.length}`);
    }
    const got = await this.run(GRAPH_CHUNK, ids, null);
    return { logits: got.logits, state: this.stateFrom(got, ids.length) };
  }

  /** The reference's next-token logits: the network over the last W ids. */
  async exactLogits(ids) {
    return (await this.run(GRAPH_CHUNK, ids.slice(-this.config.window), null)).logits;
  }

  /** Run the step (state given) or chunk graph: the decode graph when loaded, with `refill`. */
  async run(graph, ids, state) {
    const ort = this.ort;
    const feeds = { input_ids: new ort.Tensor('int32', Int32Array.from(ids), [1, ids.length]) };
    const decode = this.sessions[GRAPH_DECODE];
    if (graph === GRAPH_STEP || decode) {
      const s = state || this.zeroState();
      feeds[this.positionInput] = new ort.Tensor('int64', BigInt64Array.from([BigInt(s.position)]), [1]);
      for (const f of this.stateFields) feeds[f.input] = new ort.Tensor('float32', s.tensors[f.field], dims(f.shape));
    }
    let session = this.sessions[graph];
    if (decode) {
      session = decode;
      feeds.refill = new ort.Tensor('bool', new Uint8Array([graph === GRAPH_CHUNK ? 1 : 0]), []);
    }
    if (!session) throw new MofError(`the ${pyRepr(graph)} graph was not loaded`);
    const out = await session.run(feeds);
    const got = { logits: Float32Array.from(out.logits.data) };
    for (const f of this.stateFields) got[f.output] = Float32Array.from(out[f.output].data);
    for (const t of Object.values(out)) if (t.dispose) t.dispose();
    return got;
  }

  stateFrom(got, position) {
    const tensors = {};
    for (const f of this.stateFields) tensors[f.field] = got[f.output];
    return new State(position, tensors);
  }

  checkIds(ids) {
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) throw new MofError('token ids must be a list of integers');
    if (!ids.length) throw new MofError(`token ids must have shape [batch, n] with n >= 1, got [1, 0]`);
    const V = this.config.vocab_size;
    for (const i of ids) {
      if (!Number.isInteger(i)) throw new MofError('token ids must be integers');
      if (i < 0 || i >= V) throw new MofError(`token ids must lie in [0, ${V}), got ${i}`);
    }
  }

  /** Free the onnxruntime sessions (a page reloading another bundle). */
  async release() {
    for (const s of Object.values(this.sessions)) if (s.release) await s.release();
    this.sessions = {};
  }
}

function dims(shape) {
  return shape.map((d) => (d === 'batch' ? 1 : d));
}

function size(shape) {
  return dims(shape).reduce((a, b) => a * b, 1);
}

function checkStateSection(manifest, where) {
  const fields = (manifest.state || {}).fields;
  if (!Array.isArray(fields)) throw new BundleError(`${where}: the manifest has no state.fields`);
  for (const f of fields) {
    if (!f || typeof f.field !== 'string' || typeof f.input !== 'string' || typeof f.output !== 'string' || !Array.isArray(f.shape)) {
      throw new BundleError(`${where}: state.fields holds a bad entry ${JSON.stringify(f)}`);
    }
    if (f.dtype !== 'float32') throw new BundleError(`${where}: state ${f.field} has dtype ${f.dtype}; expected float32`);
    if (!f.shape.every((d) => d === 'batch' || (Number.isInteger(d) && d >= 0))) {
      throw new BundleError(`${where}: state ${f.field} has a bad shape ${JSON.stringify(f.shape)}`);
    }
  }
}

function readVocabulary(bytes, path) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    throw new MofError(`${path}: vocabulary is not UTF-8`);
  }
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new MofError(`${path}: not a JSON list (${String(e.message).split('\n')[0]})`);
  }
  return new Vocabulary(checkTokenList(obj, path));
}

/** A graph may read external data from its precision's weights file only, and only in format 2. */
function checkExternalData(graph, weights, where) {
  let locations;
  try {
    locations = new Set(externalLocations(graph));
  } catch (e) {
    if (e instanceof ProtoError) throw new BundleError(`${where} is not a valid ONNX graph (${e.message})`);
    throw e;
  }
  const bad = [...locations].filter((l) => l !== weights).map(String).sort();
  if (bad.length) {
    throw new BundleError(`${where} refers to external data in ${pyRepr(bad[0])}; ` +
      (weights ? `only ${weights} may hold its weights` : 'graphs of a format-1 bundle may not use external data'));
  }
}

/** The graph's real inputs/outputs must be the ones the manifest promises. */
function checkIo(session, entry, where) {
  const wantIn = (entry.inputs || []).map((t) => t.name);
  const wantOut = (entry.outputs || []).map((t) => t.name);
  const gotIn = [...session.inputNames];
  const gotOut = [...session.outputNames];
  const same = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
  if (!same(gotIn, wantIn) || !same(gotOut, wantOut)) {
    throw new BundleError(`${where}: inputs ${pyRepr(gotIn)} / outputs ${pyRepr(gotOut)} do not match the manifest ` +
      `(${pyRepr(wantIn)} / ${pyRepr(wantOut)})`);
  }
}
