'use strict';
// Lambda's Node context object and the reserved environment variables set at /init.

const crypto = require('crypto');
const path = require('path');

const LOG_GROUP_TEMPLATE = (name) => `/hotpool/functions/${name}`;
const arn = (config) =>
  `arn:hotpool:lambda:${config.region}:000000000000:function:${config.function_name}:${config.function_version}`;

// A log stream name shaped like Lambda's: YYYY/MM/DD/[version]<32 hex>.
function logStreamName(config) {
  const today = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
  return `${today}/[${config.function_version}]${crypto.randomBytes(16).toString('hex')}`;
}

// The folders of the opt directory Lambda's Node runtime puts on NODE_PATH, then its own.
function nodePath(optDir, codeDir, runtimeDir) {
  const major = process.versions.node.split('.')[0];
  const opt = optDir || '/opt';
  return [
    path.join(opt, 'nodejs', `node${major}`, 'node_modules'),
    path.join(opt, 'nodejs', 'node_modules'),
    runtimeDir,
    codeDir,
  ].join(':');
}

// The reserved variables of the function, as Lambda names them for Node.
function lambdaVariables(config, { codeDir, runtimeDir, optDir, logStream, handler }) {
  const major = process.versions.node.split('.')[0];
  const variables = {
    AWS_REGION: config.region,
    AWS_DEFAULT_REGION: config.region,
    AWS_LAMBDA_FUNCTION_NAME: config.function_name,
    AWS_LAMBDA_FUNCTION_VERSION: String(config.function_version),
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(config.memory_mb),
    AWS_LAMBDA_LOG_GROUP_NAME: LOG_GROUP_TEMPLATE(config.function_name),
    AWS_LAMBDA_LOG_STREAM_NAME: logStream,
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    // libraries (the AWS SDK's user agent, Powertools) learn the runtime from it
    AWS_EXECUTION_ENV: `AWS_Lambda_nodejs${major}.x`,
    LAMBDA_TASK_ROOT: codeDir,
    LAMBDA_RUNTIME_DIR: runtimeDir,
    _HANDLER: handler,
  };
  // not reserved on Lambda: a function may set its own
  if (!('NODE_PATH' in config.env)) variables.NODE_PATH = nodePath(optDir, codeDir, runtimeDir);
  if (config.log_format === 'json') variables.AWS_LAMBDA_LOG_FORMAT = 'JSON';
  // Lambda sets the level beside the JSON format, INFO unless told
  if (config.log_level || config.log_format === 'json') {
    variables.AWS_LAMBDA_LOG_LEVEL = config.log_level || 'INFO';
  }
  return variables;
}

// Set the function's env, the reserved variables over it, then TZ (Lambda's, unless the
// function set its own); NODE_PATH is re-read by require's resolver.
function applyEnvironment(config, variables) {
  Object.assign(process.env, config.env, variables);
  if (!('TZ' in config.env)) process.env.TZ = ':UTC';
  require('module')._initPaths();
}

// Lambda's Node context. The legacy done/succeed/fail end the call as the callback does.
function makeContext(config, logStream, requestId, deadline, finish) {
  const context = {
    awsRequestId: requestId,
    functionName: config.function_name,
    functionVersion: String(config.function_version),
    invokedFunctionArn: arn(config),
    memoryLimitInMB: String(config.memory_mb),
    logGroupName: LOG_GROUP_TEMPLATE(config.function_name),
    logStreamName: logStream,
    identity: undefined,
    clientContext: undefined,
    callbackWaitsForEmptyEventLoop: true,
    // hotpool's own: which attempt at this request id this is (asynchronous retries)
    attempt: 1,
    getRemainingTimeInMillis: () => Math.max(0, Math.floor(deadline - performance.now())),
    done: (err, result) => finish(err, result, false),
    succeed: (result) => finish(null, result, false),
    fail: (err) => finish(err ?? 'handled', undefined, false),
  };
  return context;
}

module.exports = { lambdaVariables, applyEnvironment, makeContext, logStreamName };
