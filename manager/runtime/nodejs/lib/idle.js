'use strict';
// A full, compacting garbage collection once the container has been idle for a moment.
//
// After a burst of calls V8 keeps the old generation it grew, garbage and all, until a later
// collection that an idle process never triggers (its memory reducer did not, measured), and the
// Buffers that garbage holds stay allocated. One collection a second after the last call gives
// them back: an idle container that had served 20,000 calls held 64 MiB, 59 with this
// (benchmarks/runtimes.py; a bare node: 40). It runs only while no call is under way, so a call
// never waits on it for longer than one collection of a heap this small (a few ms).
//
// `gc` is taken from a fresh context, not exposed on the function's global object.

const v8 = require('v8');
const vm = require('vm');

const IDLE_GC_MS = 1000;

function idleCollector(isBusy) {
  v8.setFlagsFromString('--expose-gc');
  const collect = vm.runInNewContext('gc');
  const timer = setTimeout(() => {
    if (!isBusy()) collect();
  }, IDLE_GC_MS);
  timer.unref();
  // refresh() re-arms the timer, also once it has fired: a few ns a call, no new timer
  return () => timer.refresh();
}

module.exports = { idleCollector, IDLE_GC_MS };
