'use strict';
// The HTTP/1.1 server, on Node's http module: keep-alive (never timed out: Main keeps its
// connections), pipelining, bodies by Content-Length only. As the Python runtime's http11:
// a missing or wrong X-Hotpool-Container-Secret -> 401 before the body is read; Transfer-
// Encoding -> 411; bad Content-Length -> 400; body over 300 MB -> 413; request line and
// headers over 64 KiB -> 431; unknown path 404, wrong method 405; those close the connection
// (401, 411, 413, 431 and malformed requests). Every answer is JSON with a Content-Length,
// but a route's streamed answer (an object with a `respond(req, res)` method).

const crypto = require('crypto');
const http = require('http');
const { RequestError, badRequest } = require('./errors');

const MAX_BODY_BYTES = 300 * 1024 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const SECRET_HEADER = 'x-hotpool-container-secret';
const CLOSING = Symbol('closing'); // on a socket whose last answer closes it

function parseJson(body) {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest(`body is not valid JSON: ${err.message}`);
  }
}

function send(res, status, payload, close = false) {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
  const headers = { 'Content-Type': 'application/json', 'Content-Length': body.length };
  if (close) {
    headers.Connection = 'close';
    res.shouldKeepAlive = false;
    res.socket[CLOSING] = true;
  }
  res.writeHead(status, headers);
  res.end(body);
}

const digest = (bytes) => crypto.createHash('sha256').update(bytes).digest();

// Constant time: timingSafeEqual wants equal lengths, which digests of any input have.
function sameSecret(presented, secret) {
  return crypto.timingSafeEqual(digest(Buffer.from(presented || '', 'latin1')), digest(secret));
}

// Check the head of a request, before its body is read: the RequestError to answer, if any.
function refuse(req, secret) {
  if (!sameSecret(req.headers[SECRET_HEADER], secret)) {
    return new RequestError(401, 'Unauthorized', 'missing or wrong X-Hotpool-Container-Secret');
  }
  if ('transfer-encoding' in req.headers) return new RequestError(411, 'LengthRequired', 'send a Content-Length, not chunks');
  const text = req.headers['content-length'] ?? '0';
  if (!/^[0-9]+$/.test(text)) return badRequest(`invalid Content-Length: ${JSON.stringify(text.slice(0, 100))}`);
  if (Number(text) > MAX_BODY_BYTES) return new RequestError(413, 'PayloadTooLarge', `body over ${MAX_BODY_BYTES} bytes`);
  return null;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('aborted', () => reject(badRequest('connection closed before the body was complete')));
  });
}

async function handle(routes, secret, req, res) {
  const started = performance.now();
  if (req.httpVersion !== '1.1' && req.httpVersion !== '1.0') {
    return send(res, 400, badRequest(`malformed request line: HTTP/${req.httpVersion}`).payload(), true);
  }
  const refused = refuse(req, secret);
  if (refused) return send(res, refused.status, refused.payload(), true);
  const [method, handler] = routes[req.url.split('?', 1)[0]] || [];
  let body;
  try {
    body = await readBody(req);
  } catch (err) {
    return send(res, 400, err.payload ? err.payload() : { error: { type: 'BadRequest', message: String(err) } }, true);
  }
  try {
    if (!handler) throw new RequestError(404, 'NotFound', `no such path: ${req.url}`);
    if (req.method !== method) throw new RequestError(405, 'MethodNotAllowed', `${req.url} only accepts ${method}`);
    const answer = await handler(body, req.headers, started);
    if (answer && typeof answer.respond === 'function') return answer.respond(req, res);
    return send(res, 200, answer);
  } catch (err) {
    if (err instanceof RequestError) return send(res, err.status, err.payload());
    return send(res, 500, { error: { type: 'InternalError', message: String(err && err.stack) } });
  }
}

// Node answers a malformed request itself; this makes it the JSON the Python runtime gives.
function clientError(err, socket) {
  // after a refusal that closes the connection, what follows its head is not parsed further
  if (!socket.writable || err.code === 'ECONNRESET' || socket[CLOSING]) return socket.destroy();
  let [status, reason, type, message] = [400, 'Bad Request', 'BadRequest', `malformed request: ${err.code || err.message}`];
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    [status, reason, type, message] = [431, 'Request Header Fields Too Large', 'RequestHeaderFieldsTooLarge', `request line and headers over ${MAX_HEAD_BYTES} bytes`];
  } else if (err.code === 'HPE_INVALID_TRANSFER_ENCODING') {
    // Node's parser refuses chunks beside a Content-Length before the route could
    [status, reason, type, message] = [411, 'Length Required', 'LengthRequired', 'send a Content-Length, not chunks'];
  }
  const body = JSON.stringify({ error: { type, message } });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

function createServer(routes, secret) {
  const server = http.createServer({ maxHeaderSize: MAX_HEAD_BYTES, noDelay: true, keepAlive: true, requireHostHeader: false }, (req, res) => {
    handle(routes, secret, req, res).catch((err) => res.destroy(err));
  });
  // Main keeps idle connections for as long as the container lives; no call is cut short here
  // (Main enforces each call's deadline by removing the container)
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.timeout = 0;
  // Main half-closes a stream it no longer wants (SHUT_WR): the answer must still go out
  server.httpAllowHalfOpen = true;
  server.on('clientError', clientError);
  return server;
}

module.exports = { createServer, parseJson, send };
