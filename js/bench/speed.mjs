// One chat turn's decode speed with the mof JavaScript package, for benchmarks/js_speed.py:
//   node js/bench/speed.mjs FLAVOUR PRECISION TEXT SAMPLING_JSON [THREADS]
// FLAVOUR: onnxruntime-node or onnxruntime-web (WebAssembly, as in a tab; THREADS default 1).
// Prints one JSON line: tokens, decode tokens/s, prefill ms, the reply.
import { loadModel, ChatSession } from '../src/node.js';

const [flavour, precision, text, samplingJson, threads] = process.argv.slice(2);
const ort = await import(flavour);
if (flavour === 'onnxruntime-web') ort.env.wasm.numThreads = Number(threads || 1);
const sessionOptions = flavour === 'onnxruntime-node' && threads ? { intraOpNumThreads: Number(threads) } : {};
const model = await loadModel(new URL('../../runtime/demo/t6-demo.mof', import.meta.url).pathname.replace(/\/$/, ''),
  { ort, precision, sessionOptions });
const session = new ChatSession(model, JSON.parse(samplingJson));
const gen = session.turn(text);
await gen.run();
process.stdout.write(JSON.stringify({ tokens: gen.stats.generatedTokens, tokens_per_s: gen.tokensPerSecond,
  prefill_ms: gen.stats.prefillMs, reply: gen.output, version: ort.env.versions[flavour === 'onnxruntime-node' ? 'node' : 'web'] }) + '\n');
