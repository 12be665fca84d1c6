// mof-js in a browser tab (or an Electron renderer): a bundle at a URL as the source, downloaded with
// fetch and verified (size and sha256) before onnxruntime-web sees a byte.
//
//   import * as ort from './ort/ort.wasm.min.mjs';
//   import { loadModel } from './mof/web.js';
//   const model = await loadModel('./bundle/', { ort, onProgress: (done, total) => ... });

import { BundleError } from './errors.js';
import { MANIFEST_FILE } from './bundle.js';
import { Model } from './model.js';

export * from './index.js';

/** A bundle served at `baseUrl` (a directory URL) as a source. @returns {import('./bundle.js').BundleSource} */
export function urlSource(baseUrl, { fetch = globalThis.fetch } = {}) {
  const base = new URL(baseUrl.endsWith('/') ? baseUrl : baseUrl + '/', globalThis.location ? globalThis.location.href : undefined);
  const where = base.href.replace(/\/$/, '');
  const get = async (name) => {
    let r;
    try {
      r = await fetch(new URL(name, base).href);
    } catch (e) {
      throw new BundleError(`${where}: cannot fetch ${name}: ${e.message || e}`);
    }
    return r;
  };
  return {
    where,
    path: (name) => `${where}/${name}`,
    async manifestText() {
      const r = await get(MANIFEST_FILE);
      if (r.status === 404) throw new BundleError(`${where} is not a mof bundle (no ${MANIFEST_FILE})`);
      if (!r.ok) throw new BundleError(`cannot read ${where}/${MANIFEST_FILE}: HTTP ${r.status}`);
      return r.text();
    },
    async read(name, onBytes) {
      const r = await get(name);
      if (r.status === 404) throw new BundleError(`${where}: ${name} is missing`);
      if (!r.ok) throw new BundleError(`${where}: cannot read ${name}: HTTP ${r.status}`);
      if (!r.body || !onBytes) {
        const data = new Uint8Array(await r.arrayBuffer());
        if (onBytes) onBytes(data.length);
        return data;
      }
      const parts = [];
      let n = 0;
      const reader = r.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parts.push(value);
        n += value.length;
        onBytes(value.length);
      }
      const data = new Uint8Array(n);
      let p = 0;
      for (const part of parts) {
        data.set(part, p);
        p += part.length;
      }
      return data;
    },
  };
}

/**
 * Download, verify and load the bundle at `baseUrl` (the files the chosen precision uses).
 * @param {string} baseUrl @param {import('./model.js').LoadOptions} options
 */
export function loadModel(baseUrl, options) {
  return Model.load(urlSource(baseUrl, options), options);
}
