#!/usr/bin/env node
// Greedy text generation with a mof bundle's step and chunk graphs (stream decoding with the refill
// rule), from Node.js and onnxruntime-node alone.
//
// Everything comes from the bundle's manifest.json (docs/bundle-format.md): the vocabulary file and
// its unknown id, the graphs' file names (fp32 / int8), the names, dtypes and shapes of the state
// tensors, the window W and the recommended refill period R. No Python, no mof code.
//
//   npm ci --prefix examples/node
//   node examples/node/generate.js --prompt "床前明月光，"
//   node examples/node/generate.js --model t6.mof --int8 --max-new-tokens 100 --ids
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const PROG = 'generate.js';
const DEFAULT_BUNDLE = path.resolve(__dirname, '..', '..', 'runtime', 'demo', 't6-demo.mof');
const USAGE = `usage: node ${PROG} [--model BUNDLE] [--prompt TEXT] [--max-new-tokens N] [--int8 | --int4] [--ids]
                   [--refill-every R] [--threads N] [--no-verify]

Continue TEXT greedily (argmax) with a mof bundle's stream decoder (step and chunk graphs, the
refill rule of docs/bundle-format.md) and print the continuation; tokens/s go to stderr.

  --model BUNDLE        bundle directory (default: the demo model shipped with mof,
                        ${path.relative(process.cwd(), DEFAULT_BUNDLE) || DEFAULT_BUNDLE})
  --prompt TEXT         text to continue (default: 床前明月光，)
  --max-new-tokens N    tokens to generate (default 64)
  --int8                use the bundle's int8 graphs
  --int4                use the bundle's int4 graphs (onnxruntime's MatMulNBits)
  --refill-every R      re-read the last W-R+1 characters with the chunk graph every R tokens
                        (default: the bundle's recommended_refill_every; 1 = exact mode's logits)
  --ids                 print JSON {"prompt_ids", "ids", "text", ...} instead of streaming the text
  --threads N           onnxruntime intra-op threads (default: onnxruntime's choice, one per core)
  --no-verify           skip the sha256 check of the bundle's files
  -h, --help            show this help`;

class UsageError extends Error {}

function fail(message) {
  throw new UsageError(message);
}

// ---- the bundle ---------------------------------------------------------------------------------

function plainName(name) {
  // The manifest may only name plain files inside the bundle: no directories, no '..', no absolute paths.
  return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' &&
    !name.includes('/') && !name.includes('\\') && !name.includes('\0');
}

function readJson(file, what) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    fail(`cannot read ${what} ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    fail(`${file} is not valid JSON (${e.message})`);
  }
}

function loadBundle(dir, { verify }) {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    fail(`${dir} is not a bundle directory`);
  }
  const manifest = readJson(path.join(dir, 'manifest.json'), 'manifest');
  if (manifest.format !== 'mof-bundle') fail(`${dir}: not a mof bundle (format ${JSON.stringify(manifest.format)})`);
  if (manifest.format_version !== 1 && manifest.format_version !== 2) {
    fail(`${dir}: format_version ${manifest.format_version}; this program reads versions 1 and 2`);
  }
  const files = manifest.files || {};
  for (const name of Object.keys(files)) {
    if (!plainName(name)) fail(`${dir}: the manifest names a file outside the bundle: ${JSON.stringify(name)}`);
  }
  // Read a file named by the manifest, checking its size and sha256 on the very bytes returned.
  const read = (name, what) => {
    if (!plainName(name) || !(name in files)) fail(`${dir}: the manifest lists no ${what} file ${JSON.stringify(name)}`);
    let data;
    try {
      data = fs.readFileSync(path.join(dir, name));
    } catch (e) {
      fail(`${dir}: cannot read ${name}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    }
    if (verify) {
      const want = files[name];
      if (data.length !== want.bytes) fail(`${dir}: ${name} has ${data.length} bytes, the manifest says ${want.bytes}`);
      const got = crypto.createHash('sha256').update(data).digest('hex');
      if (got !== want.sha256) fail(`${dir}: ${name} does not match its sha256 in the manifest`);
    }
    return data;
  };

  const vocab = manifest.vocab || {};
  let tokens;
  try {
    tokens = JSON.parse(read(vocab.file, 'vocabulary').toString('utf8').replace(/^\uFEFF/, ''));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    fail(`${dir}: ${vocab.file} is not valid JSON (${e.message})`);
  }
  const model = manifest.model || {};
  if (!Array.isArray(tokens) || tokens.length !== model.vocab_size) {
    fail(`${dir}: the vocabulary must be a list of model.vocab_size (${model.vocab_size}) strings`);
  }
  // Encoding: one id per character (Unicode code point); a duplicated entry encodes to its last id.
  const ids = new Map();
  tokens.forEach((t, i) => ids.set(t, i));
  const unknownId = vocab.unknown_id;
  if (!Number.isInteger(unknownId) || unknownId < 0 || unknownId >= tokens.length) {
    fail(`${dir}: vocab.unknown_id must be an id of the vocabulary, got ${JSON.stringify(unknownId)}`);
  }

  const state = manifest.state || {};
  const fields = state.fields;
  if (!Array.isArray(fields)) fail(`${dir}: the manifest has no state.fields`);
  for (const f of fields) {
    if (f.dtype !== 'float32') fail(`${dir}: state ${f.field} has dtype ${f.dtype}; expected float32`);
  }
  if (!(manifest.graphs || {}).chunk) {
    fail(`${dir}: the bundle has no chunk graph (stream refills); re-export it with this version of mof-export`);
  }
  for (const k of ['max_positions', 'window']) {
    if (!Number.isInteger(model[k]) || model[k] < 1) fail(`${dir}: model.${k} must be a positive integer`);
  }
  return { dir, manifest, read, tokens, ids, unknownId, fields, positionInput: state.position_input || 'position' };
}

function encode(bundle, chars) {
  return chars.map((c) => {
    const id = bundle.ids.get(c);
    return id === undefined ? bundle.unknownId : id;
  });
}

// ---- the graphs ---------------------------------------------------------------------------------

async function openGraph(ort, bundle, name, { precision, threads }) {
  const entry = (bundle.manifest.graphs || {})[name];
  if (!entry) fail(`${bundle.dir}: the bundle has no ${name} graph`);
  const file = entry[precision];
  if (!file) fail(precision !== 'fp32' ? `${bundle.dir} has no ${precision} graphs; add them with: mof-quantize${precision === 'int4' ? ' --int4' : ''} ${bundle.dir}`
    : `${bundle.dir}: the ${name} graph has no fp32 file`);
  const options = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    interOpNumThreads: 1,
    enableCpuMemArena: false,   // as mof.runtime: activations freed after each call
    logSeverityLevel: 3,
  };
  if (threads) options.intraOpNumThreads = threads;
  // Format 2: the graph's large weights live in one file per precision (manifest.weights), shared
  // by the step and chunk graphs; it is read and verified once and handed over as external data.
  const weights = (bundle.manifest.weights || {})[precision];
  if (weights) {
    bundle.weightsData = bundle.weightsData || {};
    bundle.weightsData[precision] = bundle.weightsData[precision] || bundle.read(weights, 'weights');
    options.externalData = [{ path: weights, data: bundle.weightsData[precision] }];
  }
  // From the verified bytes, not the path: nothing can be swapped in after the hash check.
  const session = await ort.InferenceSession.create(bundle.read(file, 'graph'), options);
  const want = (entry.inputs || []).map((t) => t.name).sort();
  const got = [...session.inputNames].sort();
  if (JSON.stringify(want) !== JSON.stringify(got)) {
    fail(`${bundle.dir}/${file}: inputs ${got} do not match the manifest's ${want}`);
  }
  return { session, file };
}

function zeroState(ort, bundle) {
  const state = {};
  for (const f of bundle.fields) {
    const shape = f.shape.map((d) => (d === 'batch' ? 1 : d));
    state[f.input] = new ort.Tensor('float32', new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  }
  return state;
}

function argmax(data) {
  let best = 0;
  for (let i = 1; i < data.length; i++) if (data[i] > data[best]) best = i;   // first of ties, as numpy
  return best;
}

// The stream decoder, as mof.runtime's StreamDecoder runs it (docs/bundle-format.md, "The refill
// rule"): the text is the source of truth (each generated token's string is appended and
// re-encoded). A feed (the prompt, then each generated token) is read by a refill — the chunk graph
// on the last K = W - R + 1 characters, from a zero state — when nothing has been read yet or when
// stepping it would make more than R - 1 tokens stepped since the last refill; otherwise by the
// step graph from the carried state. Positions stay below W.
class Stream {
  constructor(ort, bundle, step, chunk, refillEvery) {
    this.ort = ort;
    this.bundle = bundle;
    this.step = step;
    this.chunk = chunk;
    this.W = bundle.manifest.model.window;
    this.R = refillEvery;
    this.K = this.W - this.R + 1;
    this.text = [];          // every character read so far (code points)
    this.state = null;
    this.position = 0;
    this.since = 0;          // tokens stepped since the last refill
    this.refills = 0;
    this.maxPosition = 0;    // the largest position reached (tokens read into the state)
    this.logits = null;
  }

  async feed(newChars) {
    this.text.push(...newChars);
    const ids = encode(this.bundle, newChars);
    if (ids.length === 0) return;
    let out;
    if (this.state === null || this.since + ids.length > this.R - 1) {
      const window = encode(this.bundle, this.text.slice(-this.K));
      out = await this.chunk.session.run({
        input_ids: new this.ort.Tensor('int32', Int32Array.from(window), [1, window.length]),
      });
      this.refills += 1;
      this.since = 0;
      this.position = window.length;
    } else {
      out = await this.step.session.run({
        input_ids: new this.ort.Tensor('int32', Int32Array.from(ids), [1, ids.length]),
        [this.bundle.positionInput]: new this.ort.Tensor('int64', BigInt64Array.from([BigInt(this.position)]), [1]),
        ...this.state,
      });
      this.since += ids.length;
      this.position += ids.length;
    }
    const next = {};
    for (const f of this.bundle.fields) next[f.input] = out[f.output];
    this.state = next;
    this.maxPosition = Math.max(this.maxPosition, this.position);
    this.logits = out.logits.data;
  }
}

// ---- main ---------------------------------------------------------------------------------------

function parse(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: 'string' },
        prompt: { type: 'string' },
        'max-new-tokens': { type: 'string' },
        'refill-every': { type: 'string' },
        int8: { type: 'boolean' },
        int4: { type: 'boolean' },
        ids: { type: 'boolean' },
        threads: { type: 'string' },
        'no-verify': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    fail(`${e.message.split('\n')[0]} (see --help)`);
  }
  const integer = (name, text, low) => {
    if (text === undefined) return undefined;
    if (!/^\d+$/.test(text) || Number(text) < low) fail(`--${name}: expected an integer >= ${low}, got ${JSON.stringify(text)}`);
    return Number(text);
  };
  if (values.int8 && values.int4) fail('--int8 and --int4 exclude each other');
  return {
    help: values.help,
    model: values.model ? path.resolve(values.model) : DEFAULT_BUNDLE,
    prompt: values.prompt ?? '床前明月光，',
    maxNewTokens: integer('max-new-tokens', values['max-new-tokens'], 0) ?? 64,
    refillEvery: integer('refill-every', values['refill-every'], 1),
    precision: values.int4 ? 'int4' : values.int8 ? 'int8' : 'fp32',
    ids: !!values.ids,
    threads: integer('threads', values.threads, 1),
    verify: !values['no-verify'],
  };
}

async function main(argv) {
  const args = parse(argv);
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const prompt = Array.from(args.prompt);            // code points, as Python iterates a str
  if (prompt.length === 0) fail('the prompt is empty: give at least one character');
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    fail(`onnxruntime-node is not installed: run  npm ci --prefix ${path.relative(process.cwd(), __dirname) || '.'}`);
  }
  const tLoad = performance.now();
  const bundle = loadBundle(args.model, { verify: args.verify });
  const W = bundle.manifest.model.window;
  const recommended = bundle.manifest.recommended_refill_every;
  const refillEvery = args.refillEvery ?? (Number.isInteger(recommended) && recommended >= 1 && recommended <= W ? recommended : 1);
  if (refillEvery > W) fail(`--refill-every must be at most the window W = ${W}`);
  const step = await openGraph(ort, bundle, 'step', args);
  const chunk = await openGraph(ort, bundle, 'chunk', args);
  const loadS = (performance.now() - tLoad) / 1000;

  const stream = new Stream(ort, bundle, step, chunk, refillEvery);
  const t0 = performance.now();
  await stream.feed(prompt);                           // the whole prompt: one refill
  const t1 = performance.now();
  const generated = [];
  let pending = null;                                  // the previous token's string, not yet read
  for (let i = 0; i < args.maxNewTokens; i++) {
    if (pending !== null) await stream.feed(pending);
    const id = argmax(stream.logits);
    generated.push(id);
    pending = Array.from(bundle.tokens[id]);
    if (!args.ids) process.stdout.write(bundle.tokens[id]);
  }
  if (pending !== null) await stream.feed(pending);   // keep the state in step with the text
  const t2 = performance.now();

  const text = generated.map((id) => bundle.tokens[id]).join('');
  const prefillS = (t1 - t0) / 1000;
  const decodeS = (t2 - t1) / 1000;
  const tps = generated.length && decodeS > 0 ? generated.length / decodeS : NaN;
  if (args.ids) {
    process.stdout.write(JSON.stringify({
      prompt_ids: encode(bundle, prompt), ids: generated, text, graphs: [step.file, chunk.file],
      refill_every: refillEvery, position: stream.position, max_position: stream.maxPosition,
      refills: stream.refills,
      load_s: loadS, prefill_s: prefillS, decode_s: decodeS, decode_tokens_per_s: tps,
    }) + '\n');
  } else {
    process.stdout.write('\n');
  }
  process.stderr.write(`[${generated.length} tokens, prefill ${prompt.length} tok in ${(prefillS * 1000).toFixed(1)} ms, ` +
    `decode ${tps.toFixed(1)} tok/s, ${step.file} + ${chunk.file}, refill every ${refillEvery} ` +
    `(${stream.refills} refills), onnxruntime-node ${ort.env.versions.node}]\n`);
  return 0;
}

process.stdout.on('error', (e) => {   // e.g. piped into head: stop quietly
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => {
    if (e instanceof UsageError) {
      process.stderr.write(`${PROG}: error: ${e.message}\n`);
    } else {
      process.stderr.write(`${PROG}: error: ${(e && e.message ? e.message : String(e)).split('\n')[0]}\n`);
    }
    process.exitCode = 1;
  },
);
