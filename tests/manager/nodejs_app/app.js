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
exports.context = async (event, context) => {
  const before = context.getRemainingTimeInMillis();
  await new Promise((r) => setTimeout(r, 50));
  const { getRemainingTimeInMillis, done, succeed, fail, ...fields } = context;
  return { before, after: context.getRemainingTimeInMillis(), ...fields };
};
exports.env = async () => Object.fromEntries(
  ['GREETING', 'AWS_REGION', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_EXECUTION_ENV', 'TZ',
   'LAMBDA_TASK_ROOT', 'NODE_PATH', '_HANDLER', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE']
    .map((n) => [n, process.env[n]]));
exports.cwd = async () => process.cwd();
exports.circular = async () => { const a = {}; a.a = a; return a; };
exports.wait = async (event) => {
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
