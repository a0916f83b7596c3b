'use strict';
// The one function this container serves, behind the /healthz, /init and /invoke routes
// (the protocol of manager/runtime/python/hotpool_runtime/__init__.py).

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const logs = require('./logs');
const { callHandler } = require('./call');
const { functionConfig } = require('./config');
const { lambdaVariables, applyEnvironment, makeContext, logStreamName } = require('./context');
const { RequestError, badRequest, marshalError } = require('./errors');
const { parseJson } = require('./http');
const { idleCollector } = require('./idle');
const { loadHandler } = require('./loader');
const { killLeftovers } = require('./reaping');
const { StreamedResult, isStream } = require('./stream');
const { callStreamified, isStreamified } = require('./streamify');
const { unpack } = require('./zip');

const peakMemoryMb = () => process.resourceUsage().maxRSS / 1024;

function deadlineMs(header, timeoutS) {
  const value = header === undefined ? timeoutS * 1000 : Number(header);
  if (!Number.isFinite(value) || (header !== undefined && header.trim() === '')) {
    throw badRequest(`X-Hotpool-Deadline-Ms must be a finite number, got ${JSON.stringify(header)}`);
  }
  return value;
}

function unpackOrFail(zipB64, dir, what) {
  try {
    unpack(zipB64, dir, what);
  } catch (err) {
    if (err instanceof RequestError) throw err;
    const size = err.unzippedMb === undefined ? '' : ` (${Math.round(err.unzippedMb)} MB unzipped)`;
    throw new RequestError(
      422,
      'CodeUnpackFailed',
      `the ${what === 'code_zip_b64' ? 'code' : what}${size} could not be unpacked: ${err.message}; ` +
        "on Docker the code and layers share the container's /tmp (HOTPOOL_CONTAINER_TMPFS_MB)",
      { traceback: '' },
    );
  }
}

// The folder `dir` names, made if missing, by its real path: in the image /opt is a symlink
// to /tmp/opt, which does not exist before the first layer (realpath needs it to)
function realFolder(dir) {
  let target = path.resolve(dir);
  try {
    if (fs.lstatSync(target).isSymbolicLink()) target = path.resolve(path.dirname(target), fs.readlinkSync(target));
  } catch {
    // missing: made below
  }
  fs.mkdirSync(target, { recursive: true });
  return fs.realpathSync(target);
}

function installLayers(request, optDir) {
  const layers = request.layers_zip_b64 ?? [];
  if (!Array.isArray(layers) || !layers.every((l) => typeof l === 'string')) {
    throw badRequest("field 'layers_zip_b64' must be a list of strings");
  }
  if (!layers.length) return;
  if (!optDir) throw badRequest('this container has no opt directory for layers');
  const root = realFolder(optDir);
  layers.forEach((layer, i) => {
    try {
      unpackOrFail(layer, root, `layer ${i + 1}`);
    } catch (err) {
      if (err.status === 400) throw new RequestError(400, 'InvalidLayerZip', `layer ${i + 1}: ${err.message}`);
      throw new RequestError(422, 'LayerUnpackFailed', err.message, { traceback: '' });
    }
  });
}

class Runtime {
  constructor(codeDir, optDir, serverConnections) {
    this.codeDir = path.resolve(codeDir);
    this.optDir = optDir;
    this.runtimeDir = path.dirname(__dirname);
    this.serverConnections = serverConnections;
    this.loaded = null;
    this.initialising = false;
    this.busy = false;
    this.idle = idleCollector(() => this.busy);
  }

  routes() {
    return {
      '/healthz': ['GET', () => this.health()],
      '/init': ['POST', (body) => this.init(body)],
      '/invoke': ['POST', (body, headers, started) => this.invoke(body, headers, started)],
    };
  }

  health() {
    const loaded = this.loaded;
    return {
      status: 'ok',
      initialized: loaded !== null,
      busy: this.busy,
      function_name: loaded ? loaded.config.function_name : null,
      function_version: loaded ? loaded.config.function_version : null,
    };
  }

  async init(body) {
    if (this.loaded !== null || this.initialising) {
      throw new RequestError(409, 'AlreadyInitialized', 'container is already initialised');
    }
    this.initialising = true;
    try {
      return await this.load(body);
    } finally {
      this.initialising = false;
    }
  }

  async load(body) {
    const began = performance.now();
    const request = parseJson(body);
    if (!request || typeof request !== 'object' || Array.isArray(request)) throw badRequest('init body must be a JSON object');
    const config = functionConfig(request);
    const zip = request.code_zip_b64;
    if (typeof zip !== 'string') throw badRequest(zip === undefined ? "missing field 'code_zip_b64'" : "field 'code_zip_b64' has the wrong type");
    unpackOrFail(zip, this.codeDir, 'code_zip_b64');
    installLayers(request, this.optDir);
    const logStream = logStreamName(config);
    const variables = lambdaVariables(config, {
      codeDir: this.codeDir, runtimeDir: this.runtimeDir, optDir: this.optDir, logStream, handler: config.handler,
    });
    applyEnvironment(config, variables);
    // Lambda code opens bundled files relative to its task directory
    process.chdir(this.codeDir);
    logs.configure(config.log_format, config.log_level);
    const stop = logs.capture(config.log_limit_bytes);
    let handler;
    try {
      handler = await loadHandler(config.handler, this.codeDir);
    } catch (err) {
      const captured = stop();
      if (err instanceof RequestError) Object.assign(err.extra, captured);
      throw err;
    }
    const captured = stop();
    this.loaded = { config, handler, logStream };
    return { init_ms: performance.now() - began, ...captured };
  }

  async invoke(body, headers, started) {
    const loaded = this.loaded;
    if (loaded === null) throw new RequestError(503, 'NotInitialized', 'container has not been initialised');
    if (this.busy) throw new RequestError(409, 'Busy', 'container is already running an invocation');
    this.busy = true;
    let answer;
    try {
      answer = await this.run(loaded, body, headers, started);
    } catch (err) {
      this.busy = false;
      this.idle();
      throw err;
    }
    if (answer instanceof StreamedResult) {
      answer.onEnd = () => {
        this.busy = false;
        this.idle();
      };
    } else {
      this.busy = false;
      this.idle();
    }
    return answer;
  }

  async run(loaded, body, headers, started) {
    const event = body.length ? parseJson(body) : null;
    const requestId = headers['x-hotpool-request-id'] || crypto.randomUUID();
    const budgetMs = deadlineMs(headers['x-hotpool-deadline-ms'], loaded.config.timeout_s);
    const deadline = started + budgetMs;
    const attempt = headers['x-hotpool-attempt'] || '1';
    // log lines carry it from now on, and still after the call, as on Lambda
    logs.state.requestId = requestId;
    killLeftovers(); // what /init or the last call's stragglers started
    const stop = logs.capture(loaded.config.log_limit_bytes);
    const began = performance.now();
    const contextOf = (finish) => {
      const context = makeContext(loaded.config, loaded.logStream, requestId, deadline, finish);
      context.attempt = /^[0-9]{1,5}$/.test(attempt) ? Number(attempt) : 1;
      return context;
    };
    let outcome;
    try {
      if (isStreamified(loaded.handler)) {
        outcome = { result: await callStreamified(loaded.handler, event, contextOf(() => {})) };
      } else {
        const options = { serverConnections: this.serverConnections, deadline };
        outcome = await callHandler(loaded.handler, event, contextOf, options);
      }
    } catch (err) {
      stop();
      throw err;
    }
    if (!outcome.error && isStream(outcome.result)) {
      return new StreamedResult(outcome.result, { stop, began, deadline, budgetMs, requestId });
    }
    const summary = { duration_ms: performance.now() - began, peak_memory_mb: peakMemoryMb(), ...stop() };
    killLeftovers();
    let error = outcome.error;
    let resultJson;
    if (!error) {
      try {
        resultJson = JSON.stringify(outcome.result === undefined ? null : outcome.result) ?? 'null';
      } catch (err) {
        error = marshalError(err);
      }
    }
    if (error) return Buffer.from(JSON.stringify({ status: 'error', error, ...summary }));
    return Buffer.from(`{"status": "success", "result": ${resultJson}, ${JSON.stringify(summary).slice(1)}`);
  }
}

module.exports = { Runtime, peakMemoryMb };
