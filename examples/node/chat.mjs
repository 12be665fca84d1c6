#!/usr/bin/env node
// A terminal chat with a mof bundle, on the mof JavaScript package (js/, "mof-js") and onnxruntime-node:
// what an Electron app's main process or a Node service embeds. Same templates, decoding and sampling
// as mof-run, token for token (tests/examples/test_node_chat.py checks it against mof.runtime).
//
//   npm ci --prefix examples/node
//   node examples/node/chat.mjs                                # chat with the demo model
//   node examples/node/chat.mjs --model t6.mof --int8 --seed 1 --save-state talk.npz
//   echo 你好 | node examples/node/chat.mjs --max-tokens 40     # piped: one line per turn
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const PROG = 'chat.mjs';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_BUNDLE = path.resolve(HERE, '..', '..', 'runtime', 'demo', 't6-demo.mof');
const USAGE = `usage: node ${PROG} [--model BUNDLE] [--int8 | --int4] [--mode stream|exact] [--refill-every R]
                [--form chat|instruct|pretrain|raw] [--prompt TEXT] [sampling options]
                [--save-state FILE] [--load-state FILE] [--threads N]

Chat with a mof bundle in the terminal, with the mof JavaScript package on onnxruntime-node.
Without --prompt: one turn per line (typed or piped); /clear forgets the conversation, /save FILE
saves it, /bye leaves; Ctrl-C stops a reply (twice: leaves). Replies stream to stdout; a line of
statistics per reply goes to stderr.

  --model BUNDLE          bundle directory (default: the demo model shipped with mof)
  --int8, --int4          use the bundle's int8 / int4 graphs
  --mode MODE             stream or exact (default: the bundle's recommendation)
  --refill-every R        stream mode's refill period (default: the bundle's recommendation)
  --form FORM             prompt template (default: the form the bundle was trained for)
  --prompt TEXT           one turn, then exit
  --temperature T         0 = greedy (default 0.68)        --top-k K           (default 0: off)
  --top-p P               (default 0.8)                    --min-p P           (default 0: off)
  --repetition-penalty X  (default 1.2)                    --penalty-mode M    reference | sign-aware
  --ban CHARS             characters never to produce      --stop TEXT         stop before TEXT (repeatable)
  --max-tokens N          per reply (default 256)          --seed N            same seed, same text as mof-run
  --save-state FILE       after each turn, save the conversation (mof-run --save-state's format)
  --load-state FILE       resume a conversation saved by this program or by mof-run
  --threads N             onnxruntime intra-op threads (default: one per core)
  --self-check            first recompute the bundle's reference logits here (mof-check); stop if they differ
  -h, --help              show this help`;

class UsageError extends Error {}

function parse(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: 'string' }, int8: { type: 'boolean' }, int4: { type: 'boolean' },
        mode: { type: 'string' }, 'refill-every': { type: 'string' }, form: { type: 'string' },
        prompt: { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' },
        'top-p': { type: 'string' }, 'min-p': { type: 'string' }, 'repetition-penalty': { type: 'string' },
        'penalty-mode': { type: 'string' }, ban: { type: 'string', multiple: true }, stop: { type: 'string', multiple: true },
        'max-tokens': { type: 'string' }, seed: { type: 'string' }, 'save-state': { type: 'string' },
        'load-state': { type: 'string' }, threads: { type: 'string' }, 'self-check': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new UsageError(`${e.message.split('\n')[0]} (see --help)`);
  }
  const num = (name, integer) => {
    const text = values[name];
    if (text === undefined) return undefined;
    const v = Number(text);
    if (text.trim() === '' || Number.isNaN(v) || (integer && !Number.isInteger(v))) {
      throw new UsageError(`--${name}: expected ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(text)}`);
    }
    return v;
  };
  if (values.int8 && values.int4) throw new UsageError('--int8 and --int4 exclude each other');
  const sampling = {
    temperature: num('temperature'), top_k: num('top-k', true), top_p: num('top-p'), min_p: num('min-p'),
    repetition_penalty: num('repetition-penalty'), penalty_mode: values['penalty-mode'],
    max_tokens: num('max-tokens', true), seed: num('seed', true),
    ban: values.ban ? values.ban.flatMap((chars) => Array.from(chars)) : undefined, stop: values.stop,
  };
  return {
    help: values.help, model: values.model ?? DEFAULT_BUNDLE, precision: values.int4 ? 'int4' : values.int8 ? 'int8' : 'fp32',
    mode: values.mode ?? null, refillEvery: num('refill-every', true) ?? null, form: values.form ?? null,
    prompt: values.prompt, sampling, saveState: values['save-state'], loadState: values['load-state'],
    threads: num('threads', true),
    selfCheck: Boolean(values['self-check']),
  };
}

/** One turn: stream the reply, then the statistics line; Ctrl-C (SIGINT) stops it. */
async function turn(session, text, say) {
  const gen = session.form === 'raw' || session.conversation.form === 'raw' ? session.continueText(text) : session.turn(text);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGINT', stop);
  try {
    await gen.run({ onText: (piece) => process.stdout.write(piece), signal: controller.signal });
  } finally {
    process.off('SIGINT', stop);
  }
  session.finish(gen);
  process.stdout.write('\n');
  const s = gen.stats;
  say(`[${s.generatedTokens} tokens${s.stoppedBy === 'aborted' ? ', stopped' : ''}, prefill ${s.promptTokens} tok in ` +
    `${s.prefillMs.toFixed(1)} ms, decode ${gen.tokensPerSecond.toFixed(1)} tok/s, ${session.model.precision}, ` +
    `${s.refills} refills]`);
  return gen;
}

async function main(argv) {
  const args = parse(argv);
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let ort;
  let mof;
  try {
    ort = await import('onnxruntime-node');
    mof = await import('mof-js/node');
  } catch (e) {
    throw new UsageError(`${e.message.split('\n')[0]}: run  npm ci --prefix ${path.relative(process.cwd(), HERE) || '.'}`);
  }
  const say = (line) => process.stderr.write(line + '\n');
  const sessionOptions = args.threads ? { intraOpNumThreads: args.threads } : {};
  const model = await mof.loadModel(args.model, { ort, precision: args.precision, sessionOptions, selfCheck: args.selfCheck });
  if (model.selfCheckResult) say(`${PROG}: self-check: ${model.selfCheckResult.line()}`);
  const session = new mof.ChatSession(model, args.sampling, { mode: args.mode, form: args.form, refillEvery: args.refillEvery });
  say(`${PROG}: ${model.bundleName}, ${mof.describeDecoding(session.decoding)}, ${session.conversation.form} form, ` +
    `${model.precision}, onnxruntime-node ${ort.env.versions.node}`);
  if (args.loadState) await mof.loadSession(session, args.loadState);
  const save = async () => { if (args.saveState) await mof.saveSession(session, args.saveState); };
  if (args.prompt !== undefined) {
    await turn(session, args.prompt, say);
    await save();
    return 0;
  }
  const interactive = process.stdin.isTTY;
  if (interactive) say(`${PROG}: type a message; /clear forgets the conversation, /save FILE saves it, /bye leaves`);
  const rl = readline.createInterface({ input: process.stdin, terminal: interactive, prompt: '> ' });
  let quitting = false;
  rl.on('SIGINT', () => { if (quitting) process.exit(130); quitting = true; say('(Ctrl-C again leaves)'); rl.prompt(); });
  if (interactive) rl.prompt();
  for await (const raw of rl) {
    const line = raw.trim();
    quitting = false;
    if (line === '/bye') break;
    if (line === '/clear' || line === mof.CLEAN_COMMAND) {
      session.clear();
      say('(the conversation is forgotten)');
    } else if (line.startsWith('/save ')) {
      const bytes = await mof.saveSession(session, line.slice(6).trim());
      say(`(saved, ${bytes} bytes)`);
    } else if (line) {
      await turn(session, line, say);
      await save();
    }
    if (interactive) rl.prompt();
  }
  rl.close();
  return 0;
}

process.stdout.on('error', (e) => {   // e.g. piped into head: stop quietly
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => {
    const known = e instanceof UsageError || e.name === 'MofError' || e.name === 'BundleError' || e.name === 'DecodingError';
    process.stderr.write(`${PROG}: error: ${known ? e.message : String(e && e.message ? e.message : e).split('\n')[0]}\n`);
    process.exitCode = 1;
  },
);
