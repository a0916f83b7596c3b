'use strict';
// Finding and loading the handler as Lambda's Node runtime does (its UserFunction.js):
// `dir/module.export.path`: the module is looked up in dir as `module` (no extension, by
// require), `module.js` (require, or import where the nearest package.json says "type":
// "module"), `module.mjs` (import), `module.cjs` (require), then as a package on the require
// path (node_modules, NODE_PATH). The part after the module's name is a path of exports.
// Failures get Lambda's error types: Runtime.MalformedHandlerName, Runtime.ImportModuleError,
// Runtime.UserCodeSyntaxError, Runtime.HandlerNotFound; an error thrown while the module
// loads keeps its own name.

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');
const { describe, RequestError } = require('./errors');

// Lambda's expression: everything up to the first dot of the base name is the module
const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

// "dir/module.a.b" -> {dir, module, exports}; null when malformed
function parseHandler(handler) {
  const match = path.basename(handler).match(FUNCTION_EXPR);
  if (!match || !match[1] || !match[2] || handler.split('/').some((p) => p === '..' || p === '.')) return null;
  return { dir: path.dirname(handler), module: match[1], exports: match[2] };
}

function isFile(file) {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

// Whether the package.json nearest to `file`, up to the code directory, says "type": "module".
function typeModule(file, root) {
  for (let dir = path.dirname(file); dir.startsWith(root); dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (isFile(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    if (dir === root) break;
  }
  return false;
}

const importFile = async (file) => import(pathToFileURL(file).href);

async function loadModule(root, dir, name) {
  const base = path.resolve(root, dir, name);
  if (isFile(base)) return require(base);
  const esm = typeModule(base + '.js', root);
  if (isFile(base + '.js')) return esm ? importFile(base + '.js') : require(base + '.js');
  if (isFile(base + '.mjs')) return importFile(base + '.mjs');
  if (isFile(base + '.cjs')) return require(base + '.cjs');
  // a package on the require path, as Lambda falls back to
  return require(require.resolve(name, { paths: [path.resolve(root, dir)] }));
}

function syntaxOrImport(err) {
  if (err instanceof SyntaxError) return 'Runtime.UserCodeSyntaxError';
  const code = err && err.code;
  if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') return 'Runtime.ImportModuleError';
  return undefined;
}

// The handler function of `spec`, loaded from `root`; throws RequestError(422, ...) with
// Lambda's error type when it cannot be had.
async function loadHandler(spec, root) {
  const parsed = parseHandler(spec);
  if (parsed === null) {
    throw new RequestError(422, 'Runtime.MalformedHandlerName', `Bad handler ${spec}`, { traceback: '' });
  }
  let module;
  try {
    module = await loadModule(root, parsed.dir, parsed.module);
  } catch (err) {
    const error = describe(err, syntaxOrImport(err));
    if (error.type === 'Runtime.ImportModuleError') {
      error.message = `Error: Cannot find module '${parsed.module}'\n${error.message}`;
    }
    throw new RequestError(422, error.type, error.message, { traceback: error.traceback });
  }
  let handler = module;
  for (const key of parsed.exports.split('.')) handler = handler == null ? undefined : handler[key];
  if (handler === undefined && module && module.default && typeof module.default === 'object') {
    // a CommonJS module imported as ESM (a .js under "type": "module" never is, but a
    // transpiled one may export everything on `default`)
    handler = parsed.exports.split('.').reduce((at, key) => (at == null ? undefined : at[key]), module.default);
  }
  if (handler === undefined) {
    throw new RequestError(422, 'Runtime.HandlerNotFound', `${spec} is undefined or not exported`, { traceback: '' });
  }
  if (typeof handler !== 'function') {
    throw new RequestError(422, 'Runtime.HandlerNotFound', `${spec} is not a function`, { traceback: '' });
  }
  return handler;
}

module.exports = { loadHandler, parseHandler };
