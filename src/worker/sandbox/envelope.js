/**
 * The code that runs inside every sandbox before the function itself. It keeps the host's objects
 * out of the invocation path: the event arrives as JSON text and is parsed with the sandbox's own
 * JSON, and the outcome leaves as one tagged string (see Outcome in ../../pool/wire.ts), so the
 * host never walks a sandbox object (whose getters and proxies would run user code outside any
 * timeout). Errors are caught here, inside the sandbox: only that one string leaves it, and a
 * non-Error `throw 'x'` becomes an `E` outcome like any other error.
 *
 * It evaluates to a function that takes the host's three callbacks (log, setTimer, clearTimer),
 * installs `console`, `setTimeout`, `clearTimeout`, `setInterval`, `clearInterval`,
 * `queueMicrotask`, `module` and `exports`, and returns
 * `load(completion, attachServices)`: called with the completion value of the user's file once
 * that has run (and the globals script's attachServices, which adds `kv`, `env` and `secrets` to
 * each invocation's context), it returns `[invoke, configJson]` (the exported config as JSON
 * text, or undefined), or a string saying why the file yields no function. Intrinsics are
 * captured once, before any user code runs, so a function that replaces `JSON.stringify` in its
 * own context only confuses itself; the host validates whatever comes out anyway.
 */

(function (hostLog, hostSetTimer, hostClearTimer) {
  'use strict';
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const keys = Object.keys;
  const getPrototypeOf = Object.getPrototypeOf;
  const ObjectPrototype = Object.prototype;
  const isInteger = Number.isInteger;
  const isArray = Array.isArray;
  const ErrorCtor = Error;
  const StringCtor = String;
  const now = Date.now;
  const max = Math.max;
  const freeze = Object.freeze;
  const defineProperty = Object.defineProperty;
  const PromiseCtor = Promise;
  const promiseResolve = Promise.resolve;
  const then = Promise.prototype.then;
  const apply = Reflect.apply;
  const RESPONSE_KEYS = { statusCode: 1, headers: 1, body: 1, isBase64Encoded: 1 };

  function describe(value) {
    if (typeof value === 'string') return value;
    try {
      if (value instanceof ErrorCtor)
        return StringCtor(value.stack || value.name + ': ' + value.message);
      const json = stringify(value);
      if (json !== undefined) return json;
    } catch (_) {
      /* fall through to String() */
    }
    try {
      return StringCtor(value);
    } catch (_) {
      return '[unprintable]';
    }
  }

  function format(args) {
    let line = '';
    for (let i = 0; i < args.length; i++) line += (i ? ' ' : '') + describe(args[i]);
    return line;
  }

  // vm2 gives every VM a Buffer; the contract promises none (it allocates outside the timeout).
  delete globalThis.Buffer;

  // vm2's default stack is "at CallSite {}" per frame; name the function's own frames (vm2
  // hands out only sandbox frames here: host frames never reach this).
  Error.prepareStackTrace = function (error, frames) {
    let text;
    try {
      text = StringCtor(error);
    } catch (_) {
      text = 'Error';
    }
    for (let i = 0; i < frames.length; i++) {
      try {
        const file = frames[i].getFileName();
        if (!file) continue;
        text +=
          '\n    at ' +
          (frames[i].getFunctionName() || '<anonymous>') +
          ' (' +
          file +
          ':' +
          frames[i].getLineNumber() +
          ':' +
          frames[i].getColumnNumber() +
          ')';
      } catch (_) {
        /* an unreadable frame is left out */
      }
    }
    return text;
  };

  const consoleObject = {};
  for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    const tag = level === 'log' || level === 'trace' ? 'info' : level;
    consoleObject[level] = function () {
      hostLog(tag, format(arguments));
    };
  }
  defineProperty(globalThis, 'console', {
    value: freeze(consoleObject),
    writable: true,
    configurable: true,
  });
  defineProperty(globalThis, 'setTimeout', {
    value: function setTimeout(callback, ms) {
      if (typeof callback !== 'function')
        throw new TypeError('setTimeout: callback must be a function');
      const args = [];
      for (let i = 2; i < arguments.length; i++) args[i - 2] = arguments[i];
      return hostSetTimer(function () {
        try {
          apply(callback, undefined, args);
        } catch (err) {
          hostLog('error', 'uncaught in setTimeout callback: ' + describe(err));
        }
      }, +ms || 0);
    },
    writable: true,
    configurable: true,
  });
  defineProperty(globalThis, 'clearTimeout', {
    value: function clearTimeout(id) {
      if (typeof id === 'number') hostClearTimer(id);
    },
    writable: true,
    configurable: true,
  });
  // An interval is a timer that the host re-arms; it shares the ids, the per-invocation cap and
  // the end of the invocation with setTimeout (so clearTimeout clears it too, as in Node).
  defineProperty(globalThis, 'setInterval', {
    value: function setInterval(callback, ms) {
      if (typeof callback !== 'function')
        throw new TypeError('setInterval: callback must be a function');
      const args = [];
      for (let i = 2; i < arguments.length; i++) args[i - 2] = arguments[i];
      return hostSetTimer(
        function () {
          try {
            apply(callback, undefined, args);
          } catch (err) {
            hostLog('error', 'uncaught in setInterval callback: ' + describe(err));
          }
        },
        +ms || 0,
        true,
      );
    },
    writable: true,
    configurable: true,
  });
  defineProperty(globalThis, 'clearInterval', {
    value: function clearInterval(id) {
      if (typeof id === 'number') hostClearTimer(id);
    },
    writable: true,
    configurable: true,
  });
  // A microtask of the sandbox's own promise queue; its error is logged like a timer callback's
  // (in Node it would be an uncaught exception).
  const resolved = apply(promiseResolve, PromiseCtor, [undefined]);
  defineProperty(globalThis, 'queueMicrotask', {
    value: function queueMicrotask(callback) {
      if (typeof callback !== 'function') {
        let received = 'an object';
        if (callback === null || callback === undefined) received = StringCtor(callback);
        else if (typeof callback !== 'object') {
          let shown = typeof callback === 'string' ? "'" + callback + "'" : StringCtor(callback);
          if (shown.length > 28) shown = shown.slice(0, 25) + '...';
          received = 'type ' + typeof callback + ' (' + shown + ')';
        }
        const error = new TypeError(
          'The "callback" argument must be of type function. Received ' + received,
        );
        error.code = 'ERR_INVALID_ARG_TYPE';
        throw error;
      }
      apply(then, resolved, [
        function () {
          try {
            apply(callback, undefined, []);
          } catch (err) {
            hostLog('error', 'uncaught in queueMicrotask callback: ' + describe(err));
          }
        },
      ]);
    },
    writable: true,
    enumerable: true,
    configurable: true,
  });

  function isPlainObject(value) {
    if (value === null || typeof value !== 'object' || isArray(value)) return false;
    const proto = getPrototypeOf(value);
    return proto === ObjectPrototype || proto === null;
  }

  function isResponseShape(value) {
    if (!isPlainObject(value)) return false;
    const code = value.statusCode;
    if (!isInteger(code) || code < 100 || code > 599) return false;
    const own = keys(value);
    for (let i = 0; i < own.length; i++) if (RESPONSE_KEYS[own[i]] !== 1) return false;
    return true;
  }

  function settle(value) {
    try {
      if (value === undefined) return 'U';
      if (typeof value === 'string') return 'S' + value;
      if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
        return 'I' + 'the function returned a ' + typeof value + ', which cannot be sent';
      }
      if (isResponseShape(value)) {
        const body = value.body;
        const shape = { s: value.statusCode, h: value.headers, e: value.isBase64Encoded === true };
        if (typeof body === 'string') shape.b = body;
        else if (body !== undefined) {
          const json = stringify(body);
          if (json === undefined)
            return 'I' + 'the response body (a ' + typeof body + ') cannot be sent';
          shape.b = json;
          shape.j = true;
        }
        return 'R' + stringify(shape);
      }
      const json = stringify(value);
      if (json === undefined) return 'I' + 'the result cannot be sent as JSON';
      return 'J' + json;
    } catch (err) {
      return (
        'I' +
        'the result cannot be sent as JSON: ' +
        describe(err && err.message !== undefined ? err.message : err)
      );
    }
  }

  function fail(err) {
    let name = 'Error';
    let message;
    let stack;
    try {
      if (
        err instanceof ErrorCtor ||
        (err !== null && typeof err === 'object' && typeof err.message === 'string')
      ) {
        name = StringCtor(err.name || 'Error');
        message = StringCtor(err.message);
        stack = typeof err.stack === 'string' ? err.stack : undefined;
      } else {
        message =
          'the function threw a non-Error value: ' +
          (typeof err === 'string' ? err : describe(err));
      }
    } catch (_) {
      message = 'the function threw a value that cannot be read';
    }
    return 'E' + stringify({ name: name, message: message, stack: stack });
  }

  const module = { exports: {} };
  const initialExports = module.exports;
  defineProperty(globalThis, 'module', { value: module, writable: true, configurable: true });
  defineProperty(globalThis, 'exports', {
    value: initialExports,
    writable: true,
    configurable: true,
  });

  // The function is the file's module.exports (or its .default, from "export default", or its
  // .handler) when the file assigned one, else the value of the file's last expression: the seed
  // form is a bare function expression.
  function pick(completion) {
    const exported = module.exports;
    if (typeof exported === 'function') return exported;
    if (exported !== null && typeof exported === 'object') {
      if (typeof exported.default === 'function') return exported.default;
      if (typeof exported.handler === 'function') return exported.handler;
    }
    // A file with no handler export but an ES module marker (a TypeScript seed form that also
    // exports types, or an empty export list) is still the seed form.
    const bare =
      exported === initialExports ||
      (exported !== null && typeof exported === 'object' && exported.__esModule === true);
    if (bare && typeof completion === 'function') return completion;
    return undefined;
  }

  // config must be plain JSON data: a function, symbol, BigInt or undefined inside it is refused
  // rather than silently dropped by JSON.stringify.
  function plainData(key, value) {
    const type = typeof value;
    if (
      type === 'function' ||
      type === 'symbol' ||
      type === 'bigint' ||
      (type === 'undefined' && key !== '')
    ) {
      throw new TypeError(
        'config' +
          (key === '' ? '' : '.' + key) +
          ' is a ' +
          type +
          '; config must be plain JSON data',
      );
    }
    return value;
  }

  // The exported config as JSON text, or undefined when the file exports none.
  function exportedConfig() {
    const exported = module.exports;
    if (exported === null || (typeof exported !== 'object' && typeof exported !== 'function'))
      return undefined;
    const config = exported.config;
    return config === undefined ? undefined : stringify(config, plainData);
  }

  // Returns a string saying why the file yields no function, or [invoke, configJson].
  return function load(completion, attachServices) {
    const fn = pick(completion);
    if (fn === undefined)
      return 'the file does not yield a function: write (event, context) => { ... }, module.exports = (event, context) => { ... } or export default (event, context) => { ... }';
    let config;
    try {
      config = exportedConfig();
    } catch (err) {
      return 'invalid config: ' + describe(err && err.message !== undefined ? err.message : err);
    }
    return [
      function invoke(eventJson, contextJson) {
        const event = eventJson === undefined ? undefined : parse(eventJson);
        const context = parse(contextJson);
        context.getRemainingTimeInMillis = function () {
          return max(0, context.deadline - now());
        };
        if (typeof attachServices === 'function') attachServices(context);
        let result;
        try {
          result = fn(event, context);
        } catch (err) {
          return fail(err);
        }
        let thenable = false;
        try {
          thenable =
            result !== null &&
            (typeof result === 'object' || typeof result === 'function') &&
            typeof result.then === 'function';
        } catch (err) {
          return fail(err);
        }
        if (!thenable) return settle(result);
        return apply(then, apply(promiseResolve, PromiseCtor, [result]), [settle, fail]);
      },
      config,
    ];
  };
});
