// numpy's .npz files, the format mof.runtime saves conversations and states in (runtime/files.py):
// a zip archive (stored, not compressed) of .npy arrays. Only what those files hold is read and
// written: float32, int64 and unicode ('<U') arrays in C order. Parsed, never evaluated.

import { MofError } from './errors.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data) {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * An array as .npz holds it.
 * @typedef {{dtype: 'float32'|'int64'|'unicode', shape: number[], data: Float32Array|BigInt64Array|string}} NpyArray
 */

/** One .npy file (format 1.0). @param {NpyArray} a */
export function encodeNpy(a) {
  let descr;
  let body;
  if (a.dtype === 'float32') {
    descr = '<f4';
    body = new Uint8Array(a.data.buffer.slice(a.data.byteOffset, a.data.byteOffset + a.data.byteLength));
  } else if (a.dtype === 'int64') {
    descr = '<i8';
    body = new Uint8Array(a.data.buffer.slice(a.data.byteOffset, a.data.byteOffset + a.data.byteLength));
  } else if (a.dtype === 'unicode') {
    const chars = Array.from(a.data, (c) => c.codePointAt(0));
    descr = `<U${Math.max(chars.length, 1)}`;
    body = new Uint8Array(4 * Math.max(chars.length, 1));
    const view = new DataView(body.buffer);
    chars.forEach((cp, i) => view.setUint32(4 * i, cp, true));
  } else {
    throw new MofError(`cannot write dtype ${a.dtype}`);
  }
  const shape = a.shape.length === 1 ? `(${a.shape[0]},)` : `(${a.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const out = new Uint8Array(10 + header.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(body, 10 + header.length);
  return out;
}

/** @param {Uint8Array} bytes @returns {NpyArray} */
export function decodeNpy(bytes) {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new MofError('not a .npy array');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeText) throw new MofError('a .npy header without descr, fortran_order or shape');
  if (fortran[1] === 'True') throw new MofError('Fortran-ordered arrays are not read');
  const shape = shapeText[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new MofError('a .npy header with a bad shape');
  const count = shape.reduce((a, b) => a * b, 1);
  const body = Uint8Array.prototype.slice.call(bytes, start + hlen);      // a copy (a Buffer's slice is a view)
  const d = descr[1];
  if (d === '<f4' || d === '<i8') {
    const width = d === '<f4' ? 4 : 8;
    if (body.length !== count * width) throw new MofError(`a .npy body of ${body.length} bytes for ${count} values`);
    const data = d === '<f4' ? new Float32Array(body.buffer, 0, count) : new BigInt64Array(body.buffer, 0, count);
    return { dtype: d === '<f4' ? 'float32' : 'int64', shape, data };
  }
  const m = /^<U(\d+)$/.exec(d);
  if (m && count === 1) {
    const n = Number(m[1]);
    if (body.length !== 4 * n) throw new MofError('a .npy string of the wrong length');
    const v = new DataView(body.buffer);
    let s = '';
    for (let i = 0; i < n; i++) {
      const cp = v.getUint32(4 * i, true);
      if (cp === 0) break;                       // numpy strips trailing NULs
      s += String.fromCodePoint(cp);
    }
    return { dtype: 'unicode', shape, data: s };
  }
  throw new MofError(`a .npy array of dtype ${d}, not read here`);
}

/** A zip archive of `name.npy` entries, stored, as np.savez writes. @param {Record<string, NpyArray>} arrays */
export function encodeNpz(arrays) {
  const enc = new TextEncoder();
  const locals = [];
  const central = [];
  let offset = 0;
  for (const [key, arr] of Object.entries(arrays)) {
    const name = enc.encode(`${key}.npy`);
    const data = encodeNpy(arr);
    const crc = crc32(data);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(12, 33, true);                  // 1980-01-01
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const cd = new Uint8Array(46 + name.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(14, 33, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    cd.set(name, 46);
    locals.push(local, data);
    central.push(cd);
    offset += local.length + data.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, central.length, true);
  ev.setUint16(10, central.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let p = 0;
  for (const part of [...locals, ...central, end]) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

/** The arrays of an .npz (stored entries; np.savez's). @returns {Record<string, NpyArray>} */
export function decodeNpz(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new MofError('not a zip archive');
  const entries = view.getUint16(eocd + 10, true);
  let p = view.getUint32(eocd + 16, true);
  const dec = new TextDecoder();
  const out = {};
  for (let k = 0; k < entries; k++) {
    if (p + 46 > bytes.length || view.getUint32(p, true) !== 0x02014b50) throw new MofError('a damaged zip directory');
    const method = view.getUint16(p + 10, true);
    const crc = view.getUint32(p + 16, true);
    const size = view.getUint32(p + 20, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    const local = view.getUint32(p + 42, true);
    const name = dec.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    p += 46 + nameLen + extraLen + commentLen;
    if (method !== 0) throw new MofError(`${name} is compressed (np.savez_compressed); only np.savez files are read`);
    if (view.getUint32(local, true) !== 0x04034b50) throw new MofError('a damaged zip entry');
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    if (start + size > bytes.length) throw new MofError('a truncated zip entry');
    const data = bytes.subarray(start, start + size);
    if (crc32(data) !== crc) throw new MofError(`${name} fails its CRC check`);
    out[name.replace(/\.npy$/, '')] = decodeNpy(data);
  }
  return out;
}
