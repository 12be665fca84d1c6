// The error types of mof's runtime (runtime/errors.py): a MofError is "the user gave us something
// wrong" and its message is one line; anything else is a bug.

/** A user-facing error: bad input, missing file, mismatched shapes. */
export class MofError extends Error {
  constructor(message) {
    super(message);
    this.name = 'MofError';
  }
}

/** A bundle is missing, corrupt, tampered with or of another format. */
export class BundleError extends MofError {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

/** A decoding setting a user got wrong; `param` names it ("mode" or "refill_every"). */
export class DecodingError extends MofError {
  constructor(message, param) {
    super(message);
    this.name = 'DecodingError';
    this.param = param;
  }
}

/** Python's repr() of a scalar, so messages read as the Python runtime's. */
export function pyRepr(v) {
  if (typeof v === 'string') return `'${v}'`;
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
