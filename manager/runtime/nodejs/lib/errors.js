'use strict';
// How the runtime reports failures: requests it refuses, and errors user code threw.

class RequestError extends Error {
  // A request the runtime refuses, with its HTTP status and JSON error body.
  constructor(status, type, message, extra = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.extra = extra;
  }

  payload() {
    const error = { type: this.type, message: this.message };
    const { traceback, ...others } = this.extra;
    if (traceback !== undefined) error.traceback = traceback;
    return { error, ...others };
  }
}

const badRequest = (message) => new RequestError(400, 'BadRequest', message);

// The error's name as Lambda's Node runtime reports it (errorType): its `name`, else its
// constructor's; a thrown non-Error (a string, a number) is the type of that value.
function errorType(err) {
  if (err instanceof Error || (err && typeof err === 'object' && 'stack' in err)) {
    return String(err.name || (err.constructor && err.constructor.name) || 'Error');
  }
  return err === null ? 'object' : typeof err;
}

function errorMessage(err) {
  if (err instanceof Error || (err && typeof err === 'object' && 'message' in err)) {
    return String(err.message);
  }
  try {
    return typeof err === 'string' ? err : JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}

// An error user code threw, as the `error` field of an answer: type and message, the stack as
// text (traceback) and as Lambda's Node runtime lists it, one string a line: `trace`, which
// Main passes on beside the `stackTrace` (stack_trace) every runtime's answer has.
function describe(err, type = undefined) {
  const stack = err && typeof err === 'object' && typeof err.stack === 'string' ? err.stack : '';
  const lines = stack ? stack.split('\n') : [];
  return { type: type || errorType(err), message: errorMessage(err), traceback: stack, stack_trace: lines, trace: lines };
}

// A result that cannot be encoded, named as Lambda names it.
function marshalError(err) {
  return {
    type: 'Runtime.MarshalError',
    message: `Unable to stringify response body: ${errorMessage(err)}`,
    traceback: '',
    stack_trace: [],
    trace: [],
  };
}

module.exports = { RequestError, badRequest, describe, marshalError, errorType, errorMessage };
