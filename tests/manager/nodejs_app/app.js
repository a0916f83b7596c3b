// The contract's handlers in Node; python_app/app.py has their twins by the same names.
const { execSync, spawn } = require('child_process');
const fs = require('fs');
console.log('loading app');
exports.NOT_CALLABLE = 42;
exports.echo = async (event) => event;
exports.transform = async (event) => ({ doubled: event.n * 2, seen: event });
exports.fail = async (event) => { throw new TypeError(`bad input ${event.n}`); };
exports.failString = (event, context, callback) => callback('plain string');
exports.callback = (event, context, callback) => {
  setTimeout(() => callback(null, { via: 'callback', n: event.n }), 5);
};
// the answer waits for the timer the call left (callbackWaitsForEmptyEventLoop)
exports.waits = (event, context, callback) => {
  setTimeout(() => fs.writeFileSync(event.path, 'timer ran'), 200);
  callback(null, 'answered');
};
exports.noWait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => fs.writeFileSync(event.path, 'timer ran'), 2000).unref();
  callback(null, 'answered');
};
exports.legacy = (event, context) => { context.succeed({ legacy: true }); };
exports.syncReturn = (event) => 'ignored';
exports.noisy = async () => {
  console.log('to stdout', { a: 1 });
  console.error('an error line');
  console.warn('multi\nline');
  process.stdout.write('raw out\n');
  process.stderr.write('raw err\n');
  return 'quiet';
};
exports.flood = async (event) => { process.stdout.write('x'.repeat(event.size)); return 'flooded'; };
// Node's context under the names the Python twin returns, so one assertion holds for both
exports.context_info = async (event, context) => {
  const before = context.getRemainingTimeInMillis();
  await new Promise((r) => setTimeout(r, 50));
  return {
    before,
    after: context.getRemainingTimeInMillis(),
    aws_request_id: context.awsRequestId,
    function_name: context.functionName,
    function_version: context.functionVersion,
    invoked_function_arn: context.invokedFunctionArn,
    memory_limit_in_mb: context.memoryLimitInMB,
    log_group_name: context.logGroupName,
    log_stream_name: context.logStreamName,
    identity: context.identity ?? null,
    client_context: context.clientContext ?? null,
    callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  };
};
exports.read_env = async () => process.env.GREETING;
const ENV_NAMES = ['GREETING', 'AWS_REGION', 'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_EXECUTION_ENV', 'TZ', 'LAMBDA_TASK_ROOT',
  'NODE_PATH', '_HANDLER', 'AWS_LAMBDA_LOG_FORMAT', 'AWS_LAMBDA_LOG_LEVEL'];
exports.lambda_env = async () => ({
  ...Object.fromEntries(ENV_NAMES.map((n) => [n, process.env[n]])),
  tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
  cwd: process.cwd(),
});
exports.not_serializable = async () => { const a = {}; a.a = a; return a; };
exports.wait_for_file = async (event) => {
  const deadline = Date.now() + 5000;
  while (!fs.existsSync(event.path) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return 'released';
};
exports.rejectLater = async () => { Promise.reject(new Error('nobody waits')); await new Promise((r) => setTimeout(r, 100)); return 'too late'; };
exports.spawner = async (event) => {
  const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
  child.unref();
  return child.pid;
};
exports.nested = { deeper: { handler: async () => 'nested export' } };
