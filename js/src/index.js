// mof for JavaScript: load a mof bundle and decode as mof.runtime does, with the host's onnxruntime
// (onnxruntime-node in Node and Electron's main process, onnxruntime-web in a browser tab). This
// module imports neither: the host passes its `ort` module to Model.load. Files come from a source:
// `mof-js/node` reads a directory, `mof-js/web` fetches URLs.

export { MofError, BundleError, DecodingError } from './errors.js';
export { RandomState } from './random.js';
export { Vocabulary } from './vocab.js';
export { Conversation, FORMS, STOPS, CLEAN_COMMAND } from './chat.js';
export { samplingConfig, Sampler, SAMPLING_DEFAULTS, PENALTY_MODES } from './sampling.js';
export { readManifest, isPlainName, lookups, PRECISIONS } from './bundle.js';
export { Model, State } from './model.js';
export { MODES, resolveDecoding, describeDecoding, StreamDecoder, ExactDecoder, makeDecoder, API, CLI } from './decoder.js';
export { Generation, Generator } from './generate.js';
export { ChatSession, SAVE_FORMAT, SAVE_VERSION } from './session.js';
export { encodeNpz, decodeNpz } from './npz.js';
export { sha256 } from './sha256.js';
export { selfCheck, decodeArray } from './selfcheck.js';
