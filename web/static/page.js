// mof chat in the tab: the model runs here, in WebAssembly (onnxruntime-web), through the mof
// JavaScript package (mof/). The bundle's files are downloaded from this site and verified (size and
// sha256) before onnxruntime sees them; nothing is sent anywhere. The look and controls are mof-serve's
// page's (chat.css is its stylesheet).
import * as ort from './ort/ort.wasm.min.mjs';
import { ChatSession, describeDecoding, loadModel } from './mof/web.js';

const $ = (id) => document.getElementById(id);
const page = { model: null, session: null, controller: null };

function setStatus(text, kind) {
  const s = $('status');
  s.textContent = text;
  s.dataset.state = kind;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = 'message ' + role;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  div.appendChild(body);
  $('messages').appendChild(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

function setMeta(div, text) {
  let meta = div.querySelector('.meta');
  if (!meta) {
    meta = document.createElement('span');
    meta.className = 'meta';
    div.appendChild(meta);
  }
  meta.textContent = text;
}

function showError(text) {
  const div = addMessage('error', text);
  div.dataset.finish = 'error';
  setStatus('error: ' + text, 'error');
}

/** WebAssembly with SIMD always (onnxruntime-web 1.31 ships SIMD builds only); threads only when the
 * page is cross-origin isolated (SharedArrayBuffer), which the server's headers decide. */
function configureRuntime() {
  const isolated = globalThis.crossOriginIsolated === true;
  const threads = isolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = { mjs: new URL('./ort/ort-wasm-simd-threaded.mjs', import.meta.url).href,
    wasm: new URL('./ort/ort-wasm-simd-threaded.wasm', import.meta.url).href };
  ort.env.logLevel = 'error';
  const backend = $('info-backend');
  backend.textContent = `WASM SIMD, ${threads} thread${threads > 1 ? 's' : ''}`;
  backend.title = isolated ? `WebAssembly SIMD, ${threads} threads: the page is cross-origin isolated`
    : 'WebAssembly SIMD, 1 thread: the page is not cross-origin isolated (the server sends no COOP/COEP headers)';
  backend.dataset.threads = String(threads);
  return backend.title;
}

function mb(n) {
  return (n / 1e6).toFixed(1);
}

async function load() {
  const runsOn = configureRuntime();
  let config;
  try {
    const r = await fetch('config.json', { cache: 'no-cache' });
    if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
    config = await r.json();
  } catch (e) {
    showError('this site has no readable config.json (write it with mof-web): ' + (e.message || e));
    return;
  }
  $('info-model').textContent = config.model.replace(/\.mof$/, '');
  $('info-precision').textContent = config.precision;
  $('download').hidden = false;
  setStatus('downloading the model…', 'loading');
  const t0 = performance.now();
  try {
    page.model = await loadModel(new URL(config.bundle, location.href).href, {
      ort, precision: config.precision,
      onProgress: (done, total) => {
        $('download-bar').value = total ? done / total : 0;
        $('download-text').textContent = `${mb(done)} / ${mb(total)} MB`;
      },
    });
  } catch (e) {
    $('download').hidden = true;
    showError('cannot load the model: ' + (e.message || e));
    return;
  }
  $('download').hidden = true;
  page.session = new ChatSession(page.model, {}, {});
  const d = page.session.decoding;
  $('info-mode').textContent = d.mode + (d.refillEvery ? ' (R = ' + d.refillEvery + ')' : '');
  $('send').disabled = false;
  setStatus('ready', 'idle');
  $('timings').textContent = `model loaded in ${Math.round(performance.now() - t0)} ms (${describeDecoding(d)}); ${runsOn}`;
}

function turnSampling() {
  const s = {};
  const maxTokens = parseInt($('max-tokens').value, 10);
  if (maxTokens > 0) s.max_tokens = maxTokens;
  const temperature = parseFloat($('temperature').value);
  if (!Number.isNaN(temperature)) s.temperature = temperature;
  const seed = parseInt($('seed').value, 10);
  s.seed = Number.isNaN(seed) ? null : seed;
  return s;
}

function showTimings(gen) {
  const st = gen.stats;
  const tps = gen.tokensPerSecond;
  if (Number.isFinite(tps)) $('info-speed').textContent = tps.toFixed(1);
  $('timings').textContent = `prompt ${st.promptTokens} tokens, ${Math.round(st.prefillMs)} ms; ` +
    `${st.generatedTokens} tokens in ${Math.round(st.decodeMs)} ms` + (st.refills ? `; ${st.refills} refills` : '');
}

async function send(text) {
  addMessage('user', text);
  const bubble = addMessage('assistant', '');
  const out = bubble.querySelector('.text');
  bubble.dataset.chunks = '0';
  const controller = new AbortController();
  page.controller = controller;
  $('send').disabled = true;
  $('stop').disabled = false;
  setStatus('generating…', 'streaming');
  const session = page.session;
  let gen = null;
  let failed = null;
  try {
    gen = session.turn(text, turnSampling());
    await gen.run({
      signal: controller.signal,
      onText: (piece, g) => {
        out.textContent += piece;
        bubble.dataset.chunks = String(Number(bubble.dataset.chunks) + 1);
        bubble.scrollIntoView({ block: 'end' });
        showTimings(g);
      },
    });
    showTimings(gen);
  } catch (e) {
    failed = String(e.message || e);
  }
  if (gen && page.session === session) session.finish(gen, !!failed || gen.stats.stoppedBy === 'aborted');
  if (page.controller === controller) page.controller = null;
  $('send').disabled = false;
  $('stop').disabled = true;
  const finish = failed ? 'error' : gen.stats.stoppedBy === 'aborted' ? 'stopped' : gen.stats.stoppedBy === 'max_tokens' ? 'length' : 'stop';
  if (failed) {
    bubble.classList.add('error');
    setMeta(bubble, failed);
    setStatus('error: ' + failed, 'error');
  } else {
    setMeta(bubble, finish === 'length' ? '(max tokens reached)' : finish === 'stopped' ? '(stopped)' : '');
    setStatus('ready', 'idle');
  }
  bubble.dataset.finish = finish;
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || page.controller || !page.session) return;
  $('prompt').value = '';
  send(text);
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});
$('stop').addEventListener('click', () => page.controller && page.controller.abort());
$('clear').addEventListener('click', () => {
  if (page.controller) page.controller.abort();
  if (page.session) page.session = new ChatSession(page.model, {}, {});   // the reply being stopped stays out of it
  $('messages').replaceChildren();
  $('timings').textContent = '';
});
window.addEventListener('unhandledrejection', (e) => showError(String(e.reason && e.reason.message ? e.reason.message : e.reason)));
load();
