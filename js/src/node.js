// mof-js in Node (and Electron's main process): a bundle directory as the source, with the checks a
// directory allows (regular files only, no links), and saved conversations as files.
//
//   import * as ort from 'onnxruntime-node';
//   import { loadModel, ChatSession } from 'mof-js/node';
//   const model = await loadModel('t6.mof', { ort, precision: 'int8' });

import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BundleError, MofError } from './errors.js';
import { MANIFEST_FILE, MAX_MANIFEST_BYTES } from './bundle.js';
import { Model } from './model.js';

export * from './index.js';

/** A bundle directory as a source. @param {string} dir @returns {import('./bundle.js').BundleSource} */
export function dirSource(dir) {
  const where = String(dir);
  const fileOf = (name) => path.join(where, name);
  const check = async (name) => {
    let st;
    try {
      st = await fs.lstat(fileOf(name));
    } catch (e) {
      if (e.code === 'ENOENT') throw new BundleError(`${where}: ${name} is missing`);
      throw new BundleError(`${where}: cannot read ${name}: ${e.message}`);
    }
    if (st.isSymbolicLink()) throw new BundleError(`${where}: ${name} is a symbolic link; bundles hold regular files only`);
    if (!st.isFile()) throw new BundleError(`${where}: ${name} is missing`);
    if (st.nlink > 1) throw new BundleError(`${where}: ${name} is hard-linked elsewhere; bundles hold their own files`);
    return st.size;
  };
  return {
    where,
    path: fileOf,
    async manifestText() {
      let st;
      try {
        st = await fs.stat(where);
      } catch {
        throw new BundleError(`no bundle at ${where}: no such directory`);
      }
      if (!st.isDirectory()) throw new BundleError(`${where} is a file; a bundle is a directory (mof-export -o DIR makes one)`);
      const file = fileOf(MANIFEST_FILE);
      try {
        const size = (await fs.stat(file)).size;
        if (size > MAX_MANIFEST_BYTES) throw new BundleError(`${file} is ${size} bytes (limit ${MAX_MANIFEST_BYTES})`);
        return await fs.readFile(file, 'utf8');
      } catch (e) {
        if (e instanceof BundleError) throw e;
        if (e.code === 'ENOENT') throw new BundleError(`${where} is not a mof bundle (no ${MANIFEST_FILE})`);
        throw new BundleError(`cannot read ${file}: ${e.message}`);
      }
    },
    async read(name, onBytes) {
      await check(name);
      const data = new Uint8Array(await fs.readFile(fileOf(name)));
      if (onBytes) onBytes(data.length);
      return data;
    },
    stat: check,
  };
}

/**
 * Verify and load the bundle in `dir` (every listed file checked, as mof.runtime does).
 * @param {string} dir @param {import('./model.js').LoadOptions} options
 */
export function loadModel(dir, options) {
  return Model.load(dirSource(dir), { cpu: cpuFeatures(), ...options });
}

// The flags that select onnxruntime's int8/int4 kernels (mof.runtime.machine.CPU_FEATURES).
const CPU_FEATURES = ['sse4_1', 'avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni',
  'avx_vnni_int8', 'amx_int8', 'asimddp', 'i8mm', 'sve'];

/** This CPU as mof.runtime.machine.cpu_features describes it: {model, machine, flags} (flags from /proc/cpuinfo). */
export function cpuFeatures() {
  const machine = { x64: 'x86_64', arm64: 'aarch64' }[process.arch] || process.arch;
  let text = '';
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return { model: machine, machine, flags: [] };
  }
  const field = (key) => ((text.split('\n').find((l) => l.startsWith(key)) || '').split(':')[1] || '').trim();
  const have = new Set((field('flags') || field('Features')).split(/\s+/));
  return { model: field('model name') || machine, machine, flags: CPU_FEATURES.filter((f) => have.has(f)) };
}

/** Write the session's conversation to `file` atomically (mof-run --save-state's format). */
export async function saveSession(session, file) {
  const data = session.saveBytes();
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw new MofError(`cannot write ${file}: ${e.message}`);
  }
  return data.length;
}

/** Resume the conversation saved in `file` (by saveSession or mof-run --save-state). */
export async function loadSession(session, file) {
  let data;
  try {
    data = new Uint8Array(await fs.readFile(file));
  } catch (e) {
    throw new MofError(e.code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file}: ${e.message}`);
  }
  session.loadBytes(data, file);
}
