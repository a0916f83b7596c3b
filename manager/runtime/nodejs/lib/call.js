'use strict';
// Calling the handler as Lambda's Node runtime does: handler(event, context, callback). The
// call ends with the first of: the promise it returns settles (async handlers), the callback
// is called, or context.done/succeed/fail. The callback honours
// context.callbackWaitsForEmptyEventLoop (default true): the answer waits until what the call
// started (timers, sockets, child processes, ...) is done; Lambda waits for Node's event loop
// to be empty, here the runtime's own server and connections are discounted. A handler that
// neither returns a promise nor calls back ends, with null, once that loop is empty.

const { describe } = require('./errors');

const POLL_MS = 1;
// the call under way: an uncaught exception or unhandled rejection fails it
let failCurrent = null;

function counts(serverConnections) {
  const found = {};
  for (const type of process.getActiveResourcesInfo()) found[type] = (found[type] || 0) + 1;
  found.TCPSocketWrap = (found.TCPSocketWrap || 0) - serverConnections();
  delete found.TCPServerWrap;
  return found;
}

// Resolves once nothing beyond `baseline` is active, or the deadline (performance.now()) passed.
function emptyLoop(baseline, serverConnections, deadline) {
  return new Promise((resolve) => {
    const poll = () => {
      const now = counts(serverConnections);
      const busy = Object.entries(now).some(([type, n]) => n > (baseline[type] || 0));
      if (!busy || performance.now() >= deadline) resolve();
      else setTimeout(poll, POLL_MS).unref();
    };
    // unref'd: such a timer is not an active resource, so the poll does not count itself
    setTimeout(poll, 0).unref();
  });
}

// Run one call; resolves to {result} or {error} (the `error` field of an answer).
function callHandler(handler, event, makeContext, { serverConnections, deadline }) {
  const baseline = counts(serverConnections);
  return new Promise((resolve) => {
    let settled = false;
    let context = null;
    const finish = (err, result, fromCallback) => {
      if (settled) return;
      settled = true;
      failCurrent = null;
      const outcome = err !== null && err !== undefined ? { error: describe(err) } : { result };
      if (fromCallback && context && context.callbackWaitsForEmptyEventLoop) {
        emptyLoop(baseline, serverConnections, deadline).then(() => resolve(outcome));
      } else {
        resolve(outcome);
      }
    };
    failCurrent = (err, type) => {
      if (settled) return false;
      settled = true;
      failCurrent = null;
      resolve({ error: describe(err, type) });
      return true;
    };
    context = makeContext(finish);
    let returned;
    try {
      returned = handler(event, context, (err, result) => finish(err, result, true));
    } catch (err) {
      return finish(err, undefined, false);
    }
    if (returned && typeof returned.then === 'function') {
      returned.then(
        (result) => finish(null, result, false),
        (err) => finish(err ?? new Error(`${err}`), undefined, false),
      );
    } else if (!settled) {
      emptyLoop(baseline, serverConnections, deadline).then(() => finish(null, null, false));
    }
  });
}

// Errors no call caught fail the call under way, as on Lambda (which then also restarts the
// sandbox; here the container serves on). Outside a call they go to the container's stderr.
function installProcessHandlers(stderr) {
  process.on('uncaughtException', (err) => {
    if (!(failCurrent && failCurrent(err))) stderr(`uncaught exception outside a call: ${err && err.stack}\n`);
  });
  process.on('unhandledRejection', (reason) => {
    const err = reason instanceof Error ? reason : new Error(String(reason));
    if (!(failCurrent && failCurrent(err, 'Runtime.UnhandledPromiseRejection'))) {
      stderr(`unhandled rejection outside a call: ${err.stack}\n`);
    }
  });
}

module.exports = { callHandler, installProcessHandlers };
