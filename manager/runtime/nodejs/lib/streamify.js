'use strict';
// Lambda's response streaming API for Node, the global `awslambda`: a handler wrapped in
// `awslambda.streamifyResponse(async (event, responseStream, context) => ...)` writes its
// answer to `responseStream` (a Writable), and `awslambda.HttpResponseStream.from(stream,
// {statusCode, headers, cookies})` (or `responseStream.setContentType(type)`) gives the
// function URL's status and headers first. Here the stream feeds the frame stream of
// stream.js: what the handler writes is sent as it comes (each write an item), and the
// metadata becomes the web form's head. The answer ends when the handler ends the stream or
// its promise settles (a rejection is the stream's error).

const { PassThrough } = require('stream');

// the mark Lambda's runtime looks for on a streaming handler
const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HEAD = Symbol('hotpool.head');

function streamifyResponse(handler) {
  handler[STREAMING] = 'response';
  return handler;
}

class HttpResponseStream {
  static from(stream, metadata) {
    stream[HEAD] = { ...(stream[HEAD] || {}), ...metadata };
    return stream;
  }
}

const isStreamified = (handler) => handler[STREAMING] === 'response';

function install() {
  globalThis.awslambda = { streamifyResponse, HttpResponseStream };
}

// Call a streamified handler: the result to stream, the stream itself or, with metadata, the
// web form around it; known once the handler wrote, ended or failed (metadata comes first).
async function callStreamified(handler, event, context) {
  const stream = new PassThrough();
  stream.setContentType = (type) => {
    HttpResponseStream.from(stream, { headers: { ...((stream[HEAD] || {}).headers || {}), 'Content-Type': type } });
  };
  const started = new Promise((resolve) => {
    stream.once('readable', resolve);
    stream.once('finish', resolve);
    stream.once('error', resolve);
  });
  let failure = null;
  Promise.resolve()
    .then(() => handler(event, stream, context))
    .catch((err) => {
      failure = err instanceof Error ? err : new Error(String(err));
    })
    .finally(() => stream.writableEnded || stream.end());
  await started;
  // what was written before a failure is still sent, then the failure ends the stream
  async function* items() {
    for await (const chunk of stream) yield chunk;
    if (failure !== null) throw failure;
  }
  const head = stream[HEAD];
  return head ? { statusCode: 200, ...head, body: items() } : items();
}

module.exports = { install, isStreamified, callStreamified };
