// Conversation templates of xiaothink's QianyanModel.chat, byte for byte as runtime/chat.py builds
// them: plain concatenation, no JSON escaping (only '\n' in the user's text becomes the two
// characters '\\n').

import { MofError, pyRepr } from './errors.js';

export const FORMS = Object.freeze(['chat', 'instruct', 'pretrain', 'raw']);

/** The stop strings each form's replies end at. */
export const STOPS = Object.freeze({
  chat: Object.freeze(['"}]}', '"}']),
  instruct: Object.freeze(['"}\r\n', '"}\n\r', '"}\n', '", "input"', '", "i', '"}', '\\nHuman:']),
  pretrain: Object.freeze(['</s>', '"}']),
  raw: Object.freeze([]),
});

export const CLEAN_COMMAND = '[CLEAN]';

export class Conversation {
  /** @param {string} form chat, instruct, pretrain or raw @param {string} history the reference's self.his */
  constructor(form = 'chat', history = '') {
    if (!FORMS.includes(form)) throw new MofError(`form must be one of ${FORMS.join(', ')}, got ${pyRepr(form)}`);
    this.form = form;
    this.history = history;
  }

  get stops() {
    return STOPS[this.form];
  }

  clear() {
    this.history = '';
  }

  /** Add the user's turn to the history; return the prompt the model continues. */
  prompt(text) {
    text = text.replaceAll('\n', '\\n');
    if (this.form === 'instruct') {
      this.history += (this.history ? '\\nHuman: ' : 'Human: ') + text + '\\nAssistant:';
      return '{"instruction": "' + this.history + '", "input": "", "output": "';
    }
    if (this.form === 'chat') {
      const turn = '{"role": "user", "content": "' + text + '"}';
      this.history = this.history ? this.history + ', ' + turn : turn;
      return '{"conversations": [' + this.history + ', {"role": "assistant", "content": "';
    }
    if (this.form === 'pretrain') {
      this.history = this.history ? this.history + '\n' + text : text;
      return '{"text": "<s>' + this.history;
    }
    this.history = '';
    return text;
  }

  /** Record the model's reply (stop string excluded) as the reference does. */
  addReply(reply) {
    if (this.form === 'instruct') this.history += reply;
    else if (this.form === 'chat') this.history += ', {"role": "assistant", "content": "' + reply + '"}';
    else if (this.form === 'pretrain') this.history += reply;
  }
}
