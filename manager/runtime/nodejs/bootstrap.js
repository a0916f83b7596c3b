'use strict';
// hotpool's Node.js runtime: serve one function over HTTP until SIGTERM or SIGINT.
//
//   node bootstrap.js --code-dir DIR [--opt-dir DIR] [--host H] [--port P] [--port-file FILE]
//
// No dependencies: Node's own modules only (Node >= 18, Debian bookworm's). The protocol is the
// Python runtime's (manager/runtime/python/hotpool_runtime/__init__.py): GET /healthz, POST
// /init, POST /invoke, each carrying the container's secret in X-Hotpool-Container-Secret.
// The secret arrives first, one line on stdin (the backend writes it and closes the pipe);
// stdin then reads /dev/null. Not the environment: /proc/<pid>/environ keeps a process's
// initial environment whatever process.env becomes. No secret -> exit status 2.
// After binding it writes the port to FILE (atomically, via FILE.tmp) and prints
// `HOTPOOL_READY port=<n>` to stderr. SIGTERM or SIGINT -> exit status 0; bad arguments -> 2.
// `--opt-dir` is where layers are unpacked (/opt in the image); without it, layers are refused.
// The modules: lib/http.js the server; runtime.js the routes; config.js the /init fields;
// loader.js the handler; call.js one call (callbacks, promises, the event loop); context.js
// Lambda's context and environment; logs.js console lines and captured output; stream.js
// streamed answers, streamify.js Lambda's `awslambda.streamifyResponse`; zip.js unpacking;
// reaping.js what a call leaves running.

const fs = require('fs');
const { createServer } = require('./lib/http');
const { installProcessHandlers } = require('./lib/call');
const { Runtime } = require('./lib/runtime');
const { install: installAwslambda } = require('./lib/streamify');

const USAGE =
  'usage: node bootstrap.js --code-dir DIR [--opt-dir DIR] [--host H] [--port P] ' +
  '[--port-file FILE]  (the container secret on stdin, one line)';
const MAX_SECRET_BYTES = 1024;
const stderr = (text) => fs.writeSync(2, text);

function parseArgs(argv) {
  const options = { '--host': '127.0.0.1', '--port': '0', '--code-dir': '', '--port-file': '', '--opt-dir': '' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!(argv[i] in options)) throw new Error(`unknown flag '${argv[i]}'`);
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    options[argv[i]] = argv[i + 1];
  }
  if (!options['--code-dir']) throw new Error('--code-dir is required');
  if (!/^[0-9]+$/.test(options['--port'])) throw new Error(`--port must be a number, got '${options['--port']}'`);
  return options;
}

// The first line of stdin; fd 0 then reads /dev/null, so user code finds nothing there.
function readSecret() {
  const buffer = Buffer.alloc(MAX_SECRET_BYTES + 1);
  let size = 0;
  while (size <= MAX_SECRET_BYTES && !buffer.subarray(0, size).includes(10)) {
    let count;
    try {
      count = fs.readSync(0, buffer, size, buffer.length - size, null);
    } catch (err) {
      if (err.code === 'EAGAIN') continue;
      if (err.code === 'EOF') break;
      throw err;
    }
    if (!count) break;
    size += count;
  }
  fs.closeSync(0);
  fs.openSync('/dev/null', 'r'); // the lowest free descriptor: 0 again
  const text = buffer.subarray(0, size).toString('latin1');
  return Buffer.from(text.split('\n', 1)[0].trim(), 'latin1');
}

function writePortFile(file, port) {
  fs.writeFileSync(`${file}.tmp`, String(port));
  fs.renameSync(`${file}.tmp`, file);
}

function main(argv) {
  let options;
  try {
    options = parseArgs(argv);
  } catch (err) {
    stderr(`bootstrap: ${err.message}\n${USAGE}\n`);
    return process.exit(2);
  }
  const secret = readSecret();
  if (!secret.length) {
    stderr(`bootstrap: no container secret on stdin\n${USAGE}\n`);
    return process.exit(2);
  }
  let connections = 0;
  const runtime = new Runtime(options['--code-dir'], options['--opt-dir'], () => connections);
  const server = createServer(runtime.routes(), secret);
  server.on('connection', (socket) => {
    connections += 1;
    socket.once('close', () => (connections -= 1));
  });
  installProcessHandlers(stderr);
  installAwslambda(); // the global `awslambda` Lambda's Node runtime gives every function
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
  server.listen({ host: options['--host'], port: Number(options['--port']), backlog: 64 }, () => {
    const port = server.address().port;
    if (options['--port-file']) writePortFile(options['--port-file'], port);
    stderr(`HOTPOOL_READY port=${port}\n`);
  });
}

main(process.argv.slice(2));
