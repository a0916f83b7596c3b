// The stream contract's generators in Node; python_app/gens.py has their twins.
const fs = require('fs');
const { Readable } = require('stream');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mark = (event, text) => event.path && fs.appendFileSync(event.path, text + ' ');
const modes = {
  plain: () => ({ ok: true }),
  three: function* () { console.log('making three'); yield Buffer.from('one'); yield ''; yield 'tw\u00f6'; yield { n: 3 }; },
  one: function* () { yield '1'; },
  empty: function* () {},
  big: function* () { yield Buffer.from(Array.from({ length: 200 * 1024 }, (_, i) => i % 256)); },
  web: () => ({ statusCode: 201, headers: { 'Content-Type': 'text/html' },
                body: (function* () { yield '<p>'; yield 'hi</p>'; })() }),
  async_three: async function* () { for (let n = 0; n < 3; n++) { await sleep(0); yield `item ${n}`; } },
  readable: () => Readable.from(['r1', 'r2']),
  fails: function* () { yield 'a'; yield 'b'; throw new RangeError('broke after two'); },
  unencodable: function* () { yield 'fine'; yield 10n; },
  slow_async: async function* (event) {
    try { yield 'first'; mark(event, 'waiting'); await sleep(10000); yield 'second'; }
    finally { console.log('closed'); mark(event, 'finally'); }
  },
  slow_sync: function* (event) {
    try { yield 'first'; mark(event, 'waiting'); const t = Date.now() + 300; while (Date.now() < t); yield 'second'; yield 'third'; }
    finally { mark(event, 'finally'); }
  },
  counted: function* (event) {
    for (let n = 0; n < 200; n++) { fs.writeFileSync(event.path, String(n + 1)); yield Buffer.alloc(65536, 120); }
  },
  async_forever: async function* () { for (;;) { yield 'tick'; await sleep(10000); } },
  chatty: function* () { process.stdout.write('x'.repeat(4000000) + '\n'); yield 'done'; },
  forever: async function* () { for (;;) { yield 'tick'; await sleep(50); } },
};
exports.dispatch = async (event) => modes[event.mode](event);
