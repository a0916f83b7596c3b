'use strict';
// A handler's items sent to Main while they are produced: the chunked frame stream of the
// Python runtime (hotpool_runtime/stream.py). A handler returning a generator, an async
// generator or any async iterable (a Node Readable among them), or the web form, an object
// whose `body` is one, streams. Every HTTP chunk is one frame, a kind byte and its payload:
// H the web form's head (the object without body, JSON), first; d a part of an item, more
// follows; D the last part of an item; E the summary (status, error, duration_ms,
// peak_memory_mb, stdout, stderr, bytes, first_byte_ms, aborted), last. An item is a Buffer
// or Uint8Array as it is, a string as UTF-8, anything else one JSON line; empty items are
// skipped; a payload is at most 64 KiB.
// Back-pressure: the next item is asked for once the last was taken by the socket (write()
// returned true, or 'drain'). Abort: Main half-closes its side; the iterator is then closed
// (return()), the summary still sent (aborted) and the connection closed. Past the deadline
// the same, and the summary names Sandbox.Timedout. Unlike Python's asyncio, a pending
// promise cannot be cancelled: an item being awaited is abandoned, not interrupted.

const { describe, marshalError } = require('./errors');
const { killLeftovers } = require('./reaping');

const FRAME_PAYLOAD_BYTES = 64 * 1024;
const CLOSE_GRACE_MS = 1000;
const tag = (value) => Object.prototype.toString.call(value);

function iterable(value) {
  if (value === null || typeof value !== 'object') return false;
  const kind = tag(value);
  if (kind === '[object Generator]' || kind === '[object AsyncGenerator]') return true;
  return typeof value[Symbol.asyncIterator] === 'function';
}

function plainObject(value) {
  return value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype;
}

// A generator or async iterable, or a plain object (the web form) whose body is one.
function isStream(result) {
  return iterable(result) || (plainObject(result) && iterable(result.body));
}

function frame(kind, payload) {
  return Buffer.concat([Buffer.from(kind), payload]);
}

function encode(item) {
  if (Buffer.isBuffer(item)) return item;
  if (item instanceof Uint8Array) return Buffer.from(item.buffer, item.byteOffset, item.byteLength);
  if (typeof item === 'string') return Buffer.from(item, 'utf8');
  const text = JSON.stringify(item);
  if (text === undefined) throw new TypeError(`${typeof item} is not JSON serializable`);
  return Buffer.from(text + '\n');
}

const later = (ms, value) => new Promise((resolve) => setTimeout(resolve, ms, value).unref());

class StreamedResult {
  constructor(result, { stop, began, deadline, budgetMs, requestId }) {
    this.head = null;
    let source = result;
    if (plainObject(result) && !iterable(result)) {
      const { body, ...head } = result;
      this.head = head;
      source = body;
    }
    this.iterator = typeof source[Symbol.asyncIterator] === 'function' ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
    this.stop = stop;
    this.began = began;
    this.deadline = deadline;
    this.timeoutMessage = `RequestId: ${requestId} Error: Task timed out after ${(budgetMs / 1000).toFixed(2)} seconds`;
    this.bytes = 0;
    this.firstByteMs = null;
    this.aborted = false;
    this.peerClosed = false;
    this.timedOut = false;
    this.onEnd = null;
  }

  end() {
    const onEnd = this.onEnd;
    this.onEnd = null;
    if (onEnd) onEnd();
  }

  async respond(req, res) {
    try {
      await this.send(req, res);
    } finally {
      this.end();
    }
  }

  async send(req, res) {
    const socket = req.socket;
    let closedNow;
    const closed = new Promise((resolve) => (closedNow = resolve));
    const onEnd = () => {
      this.peerClosed = true;
      closedNow('closed');
    };
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    if (socket.readableEnded) onEnd(); // Main half-closed before the first item
    res.writeHead(200, { 'Content-Type': 'application/x-hotpool-stream', 'Transfer-Encoding': 'chunked' });
    let error = null;
    if (this.head !== null) {
      try {
        const head = Buffer.from(JSON.stringify(this.head));
        if (head.length > FRAME_PAYLOAD_BYTES) throw new Error(`all but its body is over ${FRAME_PAYLOAD_BYTES} bytes`);
        res.write(frame('H', head));
      } catch (err) {
        error = marshalError(err);
      }
    }
    try {
      if (error === null) error = await this.pump(res, closed);
    } finally {
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    }
    error = (await this.close()) || error;
    const duration = performance.now() - this.began;
    const logs = this.stop();
    killLeftovers();
    if (this.timedOut && error === null) {
      error = { type: 'Sandbox.Timedout', message: this.timeoutMessage, traceback: '', stack_trace: [] };
    }
    const summary = {
      status: error === null ? 'success' : 'error',
      ...(error === null ? {} : { error }),
      duration_ms: duration,
      peak_memory_mb: process.resourceUsage().maxRSS / 1024,
      ...logs,
      bytes: this.bytes,
      first_byte_ms: this.firstByteMs,
      aborted: this.aborted,
    };
    // the call is over: Main may hand the container to another call once E is read
    this.end();
    if (this.aborted) res.shouldKeepAlive = false;
    if (!socket.destroyed) res.end(frame('E', Buffer.from(JSON.stringify(summary))));
    if (this.aborted) res.once('finish', () => socket.end());
  }

  // Send the items; the error to report, if any.
  async pump(res, closed) {
    for (;;) {
      // a turn of the event loop between items: Main's half-close is seen even when the
      // generator never awaits (Python's runtime peeks at the socket instead)
      await new Promise(setImmediate);
      if (this.peerClosed) this.aborted = true;
      if (this.aborted || performance.now() >= this.deadline) {
        this.timedOut = !this.aborted;
        return null;
      }
      const step = Promise.resolve().then(() => this.iterator.next());
      const remaining = Math.max(0, this.deadline - performance.now());
      let next;
      try {
        next = await Promise.race([step, closed, later(remaining, 'timeout')]);
      } catch (err) {
        return describe(err);
      }
      if (next === 'closed' || next === 'timeout') {
        step.catch(() => {}); // abandoned: what it rejects with later is nobody's business
        this.aborted = next === 'closed';
        this.timedOut = !this.aborted;
        return null;
      }
      if (next.done) return null;
      let data;
      try {
        data = encode(next.value);
      } catch (err) {
        return marshalError(err);
      }
      if (!data.length) continue;
      if (this.firstByteMs === null) this.firstByteMs = performance.now() - this.began;
      this.bytes += data.length;
      for (let at = 0; at < data.length; at += FRAME_PAYLOAD_BYTES) {
        const last = at + FRAME_PAYLOAD_BYTES >= data.length;
        if (!res.write(frame(last ? 'D' : 'd', data.subarray(at, at + FRAME_PAYLOAD_BYTES)))) {
          const drained = await Promise.race([new Promise((r) => res.once('drain', r)), closed]);
          if (drained === 'closed') {
            this.aborted = true;
            return null;
          }
        }
      }
    }
  }

  // Close the iterator (its finally blocks run); what it threw, if anything.
  async close() {
    if (typeof this.iterator.return !== 'function') return null;
    try {
      await Promise.race([Promise.resolve().then(() => this.iterator.return()), later(CLOSE_GRACE_MS)]);
    } catch (err) {
      return describe(err);
    }
    return null;
  }
}

module.exports = { StreamedResult, isStream };
