// Which files an ONNX graph reads its external data from, by walking the protobuf wire format
// (runtime/onnx_refs.py, the same fields): a format-2 bundle's graphs may read external data from
// their precision's weights file only.

const MAX_DEPTH = 64;

export class ProtoError extends Error {}

function varint(buf, i) {
  let value = 0;
  let mul = 1;
  for (let shift = 0; ; shift += 7) {
    if (i >= buf.length || shift > 63) throw new ProtoError('truncated or overlong varint');
    const b = buf[i++];
    value += (b & 0x7f) * mul;
    mul *= 128;
    if (!(b & 0x80)) return [value, i];
  }
}

function fields(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    let key;
    [key, i] = varint(buf, i);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value = null;
    if (wire === 0) [value, i] = varint(buf, i);
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      let n;
      [n, i] = varint(buf, i);
      if (i + n > buf.length) throw new ProtoError('length-delimited field runs past the end');
      value = buf.subarray(i, i + n);
      i += n;
    } else throw new ProtoError(`unsupported wire type ${wire}`);
    if (i > buf.length) throw new ProtoError('field runs past the end');
    out.push([field, wire, value]);
  }
  return out;
}

const sub = (fs, wanted) => fs.filter(([f, w]) => f === wanted && w === 2).map(([, , v]) => v);
const utf8 = new TextDecoder('utf-8', { fatal: true });

function tensor(buf, out) {
  let location = null;
  let external = false;
  for (const [f, w, v] of fields(buf)) {
    if (f === 14 && w === 0) external = external || v === 1;
    else if (f === 13 && w === 2) {
      const entry = new Map(fields(v).filter(([, wk]) => wk === 2).map(([k, , val]) => [k, val]));
      if (entry.has(1) && utf8.decode(entry.get(1)) === 'location') {
        external = true;
        try {
          location = utf8.decode(entry.get(2) || new Uint8Array());
        } catch {
          location = '<not UTF-8>';
        }
      }
    }
  }
  if (external) out.push(location);
}

function graph(buf, out, depth) {
  if (depth > MAX_DEPTH) throw new ProtoError('graphs nested too deeply');
  const fs = fields(buf);
  for (const t of sub(fs, 5)) tensor(t, out);
  for (const s of sub(fs, 15)) sparse(s, out);
  for (const n of sub(fs, 1)) node(n, out, depth);
}

function sparse(buf, out) {
  const fs = fields(buf);
  for (const t of [...sub(fs, 1), ...sub(fs, 2)]) tensor(t, out);
}

function node(buf, out, depth) {
  for (const attr of sub(fields(buf), 5)) {
    const fs = fields(attr);
    for (const t of [...sub(fs, 5), ...sub(fs, 10)]) tensor(t, out);
    for (const s of [...sub(fs, 22), ...sub(fs, 23)]) sparse(s, out);
    for (const g of [...sub(fs, 6), ...sub(fs, 11)]) graph(g, out, depth + 1);
  }
}

/** The location of every tensor stored as external data (null: an external tensor without one). */
export function externalLocations(model) {
  const out = [];
  const fs = fields(model);
  for (const g of sub(fs, 7)) graph(g, out, 0);
  for (const fn of sub(fs, 25)) for (const n of sub(fields(fn), 3)) node(n, out, 1);
  return out;
}
