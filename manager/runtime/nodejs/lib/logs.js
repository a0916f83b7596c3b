'use strict';
// What a call prints, captured (bounded) into its answer, and console lines in Lambda's Node
// format. Lambda's Node runtime replaces console.* so each line carries the time, request id
// and level: text `<ISO time>\t<request id>\t<LEVEL>\t<message>\n` (the request id is the
// literal `undefined` at init, as on Lambda), or with log_format json one object a line:
// {"timestamp", "level", "requestId", "message"} (an Error logged alone adds errorType,
// errorMessage, stackTrace). Lambda filters by log level in JSON format only; so does this.
// Console lines go to the call's stdout, process.stdout/stderr writes to stdout/stderr.

const util = require('util');

const TRUNCATION_MARKER = '\n[truncated]';
// Lambda's levels, lowest first; console.log and console.info are INFO
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

class Capture {
  // The first `limit` UTF-8 bytes written to one stream, with a marker when cut.
  constructor(limit) {
    this.limit = limit;
    this.chunks = [];
    this.size = 0;
    this.truncated = false;
  }

  write(bytes) {
    const room = this.limit - this.size;
    if (bytes.length > room) {
      bytes = bytes.subarray(0, Math.max(0, room));
      this.truncated = true;
    }
    if (bytes.length) {
      this.chunks.push(bytes);
      this.size += bytes.length;
    }
  }

  value() {
    // a multi-byte character cut by the limit is dropped, as the Python runtime's "ignore"
    let text = new TextDecoder('utf-8', { fatal: false }).decode(Buffer.concat(this.chunks));
    if (this.truncated) text = text.replace(/\uFFFD$/, '') + TRUNCATION_MARKER;
    return text;
  }
}

const state = {
  requestId: undefined, // the running call's, kept after it as Lambda does
  json: false,
  minLevel: 0,
  current: null, // {stdout: Capture, stderr: Capture} while a call (or init) runs
};

const original = {
  stdout: process.stdout.write.bind(process.stdout),
  stderr: process.stderr.write.bind(process.stderr),
};

function toBytes(chunk, encoding) {
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8');
  return Buffer.from(chunk.buffer ? chunk.buffer : chunk, chunk.byteOffset || 0, chunk.byteLength);
}

function patchStream(name) {
  process[name].write = function write(chunk, encoding, callback) {
    const done = typeof encoding === 'function' ? encoding : callback;
    if (state.current === null) return original[name](chunk, encoding, callback);
    state.current[name].write(toBytes(chunk, encoding));
    if (typeof done === 'function') process.nextTick(done);
    return true;
  };
}

function line(level, args) {
  if (state.json) return jsonLine(level, args);
  const message = util.format(...args).replace(/\n/g, '\r');
  return `${new Date().toISOString()}\t${state.requestId}\t${level}\t${message}\n`;
}

function jsonLine(level, args) {
  const record = { timestamp: new Date().toISOString(), level, requestId: state.requestId };
  if (args.length === 1 && args[0] instanceof Error) {
    const err = args[0];
    Object.assign(record, {
      message: util.format(err), errorType: err.name, errorMessage: err.message,
      stackTrace: String(err.stack || '').split('\n'),
    });
  } else {
    record.message = util.format(...args);
  }
  return JSON.stringify(record) + '\n';
}

function patchConsole() {
  const methods = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
  for (const [method, level] of Object.entries(methods)) {
    const rank = LEVELS.indexOf(level);
    console[method] = (...args) => {
      if (state.json && rank < state.minLevel) return;
      if (method === 'trace') args = [util.format(...args) + '\n' + new Error().stack.split('\n').slice(2).join('\n')];
      process.stdout.write(line(level, args));
    };
  }
  console.fatal = (...args) => process.stdout.write(line('FATAL', args));
}

// Choose the format and level (the function's settings, else AWS_LAMBDA_LOG_FORMAT/LEVEL as
// Lambda reads them; JSON with no level is INFO), and patch console and the streams.
function configure(logFormat, logLevel) {
  state.json = logFormat === 'json' || (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
  const level = (logLevel || process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase();
  state.minLevel = Math.max(0, LEVELS.indexOf(level || 'INFO'));
  patchConsole();
  patchStream('stdout');
  patchStream('stderr');
}

// Start capturing into fresh buffers; returns the function that stops and gives the text.
function capture(limit) {
  const output = { stdout: new Capture(limit), stderr: new Capture(limit) };
  state.current = output;
  return () => {
    if (state.current === output) state.current = null;
    return { stdout: output.stdout.value(), stderr: output.stderr.value() };
  };
}

module.exports = { configure, capture, state, TRUNCATION_MARKER };
