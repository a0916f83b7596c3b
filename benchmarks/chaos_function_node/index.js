'use strict';
// The chaos run's Node.js function (runtime nodejs, handler index.handler): the Python chaos
// function's synchronous calls (benchmarks/chaos_function/main.py), in Node.
//
// It sleeps as the event says ({"token", "sleep_ms", "fail"}) and appends two JSON lines to the
// file named by the function's env CHAOS_LOG, one when the call starts and one when it ends,
// each with one write(2) on an O_APPEND descriptor (fs.writeSync of one short line), so
// concurrent containers of every runtime never interleave in the one ledger. The lines carry
// the Python function's fields (token, request_id, attempt, function, version, pid, container,
// start, end, failed) plus "runtime": "nodejs", so the run's checks apply unchanged. The process
// backend runs the code in <containers>/<container id>/code, the working directory the
// bootstrap gives the handler. An event with "fail": true throws after its end line.

const fs = require('fs');
const path = require('path');

const APPEND = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT;

function append(line) {
  const fd = fs.openSync(process.env.CHAOS_LOG, APPEND, 0o644);
  try {
    fs.writeSync(fd, `${JSON.stringify(line)}\n`);
  } finally {
    fs.closeSync(fd);
  }
}

const now = () => Date.now() / 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(Number(ms) || 0, 9000))));

exports.handler = async (event, context) => {
  const evidence = {
    token: event.token,
    request_id: context.awsRequestId,
    attempt: context.attempt ?? 1,
    function: context.functionName,
    version: context.functionVersion,
    runtime: 'nodejs',
    pid: process.pid,
    container: path.basename(path.dirname(process.cwd())),
    start: now(),
  };
  append({ phase: 'start', ...evidence });
  await sleep(event.sleep_ms ?? 10);
  const failing = Boolean(event.fail);
  append({ phase: 'end', ...evidence, end: now(), failed: failing });
  if (failing) throw new Error(`event ${event.token} asked to fail`);
  return event.token;
};
