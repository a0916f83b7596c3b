'use strict';
// The function's configuration, as one /init request gives it (the Python runtime's
// config.py): every field checked, a 400 naming the bad one.

const { badRequest } = require('./errors');
const { parseHandler } = require('./loader');

const LOG_FORMATS = ['text', 'json'];
const LOG_LEVELS = ['', 'TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const MISSING = Symbol('missing');

const KINDS = {
  string: (v) => typeof v === 'string',
  int: (v) => Number.isInteger(v),
  number: (v) => typeof v === 'number',
  object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
};

function field(body, name, kind, fallback = MISSING) {
  const value = name in body ? body[name] : fallback;
  if (value === MISSING) throw badRequest(`missing field '${name}'`);
  if (!KINDS[kind](value)) throw badRequest(`field '${name}' has the wrong type`);
  return value;
}

function functionConfig(body) {
  const config = {
    function_name: field(body, 'function_name', 'string'),
    function_version: field(body, 'function_version', 'int'),
    handler: field(body, 'handler', 'string'),
    memory_mb: field(body, 'memory_mb', 'int'),
    timeout_s: field(body, 'timeout_s', 'number'),
    env: field(body, 'env', 'object', {}),
    log_limit_bytes: field(body, 'log_limit_bytes', 'int', 64 * 1024),
    region: field(body, 'region', 'string', 'us-east-1'),
    log_format: field(body, 'log_format', 'string', 'text'),
    log_level: field(body, 'log_level', 'string', ''),
  };
  if (parseHandler(config.handler) === null) {
    throw badRequest(`handler must look like 'file.export' or 'dir/file.export', got ${JSON.stringify(config.handler)}`);
  }
  if (!LOG_FORMATS.includes(config.log_format) || !LOG_LEVELS.includes(config.log_level)) {
    throw badRequest(`log_format must be one of ${LOG_FORMATS}, log_level of ${LOG_LEVELS}`);
  }
  if (!config.region || /[\x00-\x1f\x7f]/.test(config.region)) throw badRequest('region must be a non-empty printable string');
  if (!Object.values(config.env).every((v) => typeof v === 'string')) throw badRequest('env must map strings to strings');
  if (!config.function_name || config.memory_mb <= 0 || config.log_limit_bytes < 0) {
    throw badRequest('function_name, memory_mb or log_limit_bytes out of range');
  }
  if (!(Number.isFinite(config.timeout_s) && config.timeout_s > 0)) throw badRequest('timeout_s must be a positive number');
  return config;
}

module.exports = { functionConfig };
