/**
 * Escape suite for function packages (docs/spec.md §2 "Packages"): the surface a bundle adds to
 * the sandbox. A bundle carries the stand-ins of the Node built-ins (bundle.ts STAND_INS: assert,
 * buffer, events, path, path/posix, process, string_decoder, url, util, under both their `x` and
 * `node:x` names), esbuild's helpers (`__commonJS`, `__toESM`, `__toCommonJS`, the injected
 * `process`) and npm packages from FUNCTIONS_DIR/node_modules. Each is walked here as
 * escape.test.ts walks the globals: every exported value, its prototypes, what it hands out and
 * what it throws, to its Function (code generation is off: the sandbox's own EvalError), through
 * `__proto__`, Function.prototype.call/bind/Reflect, stack frames (CallSite getThis/getFunction),
 * util.inspect's hooks, the callers seen by function code the stand-ins call back, and the
 * global a sloppy-mode callee sees (the sandbox's, marked by the function). Buffers never show
 * memory from outside the sandbox, and a stand-in's state belongs to one version's sandbox.
 *
 * Every answer is checked for host leaks as in escape.test.ts (the canary secret, env values,
 * host paths, a process summary), and a control function still answers afterwards.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { STAND_INS } from '../../src/functions/bundle-resolver';
import { writeFiles } from '../support/files';
import {
  CANARY,
  CANARY_VAR,
  NO_CODEGEN as SANDBOX_NO_CODEGEN,
  SUMMARY_SOURCE,
  assertNoLeak as assertNoLeakOf,
  plantCanary,
} from '../support/escape';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';
import type { Response } from 'supertest';

/** Every name a function may import a stand-in by (STAND_INS, and `node:` each). */
const STAND_IN_NAMES = Object.keys(STAND_INS).flatMap((name) => [name, `node:${name}`]);

/** The stand-ins but url (see 'url'): what the pkg-esm and pkg-cjs probes import. */
const PROBED = STAND_IN_NAMES.filter((name) => !/url$/.test(name));

const NO_CODEGEN = { ...SANDBOX_NO_CODEGEN, sandboxError: true };

/** What audit() (AUDIT) reports: everything empty but the counts. */
interface Audit {
  reached: number;
  functions: number;
  bound: number;
  natives: string[];
  foreign: string[];
  codegen: string[];
  forbidden: string[];
}

/**
 * The sandbox side, shared by every probe: summary/attempt as in escape.test.ts; tricks(v), the
 * escapes tried on one value; walk/audit, escape.test.ts's walk over everything reachable; the
 * stack frames and callers seen from inside a call; a marker on the sandbox's globalThis.
 */
const AUDIT = String.raw`
const MARKER = 'marker-' + Math.random().toString(36).slice(2);
globalThis.escapeMarker = MARKER;
const toSource = Function.prototype.toString;
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const GeneratorFunction = Object.getPrototypeOf(function* () {}).constructor;
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;
// The sandbox's function constructors: every function reached must be made by one of them.
const MAKERS = new Set([Function, AsyncFunction, GeneratorFunction, AsyncGeneratorFunction]);
const FUNCTION_PROTOS = new Set([...MAKERS].map((f) => f.prototype));
// Keys of a host process, module or fs: none may be reachable.
const FORBIDDEN = new Set(['mainModule', 'dlopen', '_linkedBinding', 'reallyExit', '_rawDebug', 'execPath', 'pid', 'ppid', 'kill',
  'abort', 'readFileSync', 'writeFileSync', 'openSync', 'spawn', 'execSync', '_load', 'require', 'getBuiltinModule', 'moduleLoadList',
  'memoryUsage', 'setuid', 'stdout', 'stderr', 'stdin', '_resolveFilename', 'createRequire']);
${SUMMARY_SOURCE}
// As escape.test.ts's, and whether what was thrown is the sandbox's own Error.
function attempt(fn) {
  try { return summary(fn()); }
  catch (e) { return { threw: String(e && e.name), message: String(e && e.message), sandboxError: e instanceof Error }; }
}
// The escapes tried on every value: each must end in the sandbox's EvalError.
function tricks(v) {
  return [
    attempt(() => v.constructor.constructor('return process')()),
    attempt(() => v.__proto__.constructor.constructor('return process')()),
    attempt(() => Object.getPrototypeOf(Object(v)).constructor.constructor('return this')()),
    attempt(() => Function.prototype.call.call(v.constructor.constructor, null, 'return process')()),
    attempt(() => Reflect.construct(v.constructor.constructor, ['return process'])()),
    attempt(() => v.constructor.constructor.bind(null, 'return globalThis')()()),
  ];
}
// Own property values, getters, setters and prototypes, breadth first (escape.test.ts's walk).
function walk(roots, visit, forbidden) {
  const seen = new Set();
  const queue = roots.slice();
  while (queue.length > 0 && seen.size < 50000) {
    const [value, path] = queue.shift();
    if (value === null || (typeof value !== 'object' && typeof value !== 'function') || seen.has(value)) continue;
    seen.add(value);
    visit(value, path);
    try { queue.push([Object.getPrototypeOf(value), path + '.__proto__']); } catch (e) {}
    let keys = [];
    try { keys = Reflect.ownKeys(value); } catch (e) {}
    for (const key of keys) {
      let d;
      try { d = Object.getOwnPropertyDescriptor(value, key); } catch (e) { continue; }
      if (!d) continue;
      const at = path + '.' + String(key);
      if (forbidden && FORBIDDEN.has(key) && (d.get || d.set || (d.value !== undefined && d.value !== null))) forbidden.push(at);
      if ('value' in d) queue.push([d.value, at]);
      if (d.get) queue.push([d.get, at + '<get>']);
      if (d.set) queue.push([d.set, at + '<set>']);
    }
  }
  return seen;
}
const INTRINSICS = [Object, Function, Array, Number, Boolean, String, Symbol, Date, Promise, RegExp, Error, AggregateError, EvalError,
  RangeError, ReferenceError, SyntaxError, TypeError, URIError, JSON, Math, Intl, ArrayBuffer, SharedArrayBuffer, Atomics, DataView,
  Uint8Array, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array, Float64Array, Uint8ClampedArray, BigInt64Array,
  BigUint64Array, Map, Set, WeakMap, WeakSet, BigInt, Reflect, WebAssembly, parseInt, parseFloat, isNaN, isFinite, decodeURI,
  decodeURIComponent, encodeURI, encodeURIComponent, escape, unescape, [][Symbol.iterator](), new Map().entries(), new Set().values(),
  ''[Symbol.iterator](), 'a'.matchAll(/a/g), (function* () {})(), (async function* () {})(), AsyncFunction, GeneratorFunction,
  AsyncGeneratorFunction, Promise.resolve(), Object.getPrototypeOf(Uint8Array)];
// Everything reachable from roots ({ label: value }): what is not the sandbox's own. natives: native
// functions that are no intrinsic (bound functions, which print as native, are counted apart);
// foreign: functions no sandbox function constructor made, constructors whose Function is not the
// sandbox's; codegen: constructors whose Function made code or threw anything but the sandbox's
// EvalError; forbidden: keys of a host process, module or fs.
function audit(roots) {
  const known = walk(INTRINSICS.map((v, i) => [v, 'intrinsic' + i]), () => {});
  const natives = [];
  const foreign = [];
  const codegen = [];
  const forbidden = [];
  let functions = 0;
  let bound = 0;
  const found = walk(Object.keys(roots).map((k) => [roots[k], k]), (value, path) => {
    if (typeof value === 'function') {
      functions++;
      let source = '';
      try { source = Reflect.apply(toSource, value, []); } catch (e) { foreign.push(path + ' toString ' + e.name); }
      if (!known.has(value) && source.includes('[native code]')) {
        if (/^bound /.test(value.name)) bound++;
        else natives.push(path);
      }
      let p = value;
      for (let i = 0; p !== null && !FUNCTION_PROTOS.has(p) && i < 100; i++) p = Object.getPrototypeOf(p);
      if (!FUNCTION_PROTOS.has(p)) foreign.push(path);
    }
    let ctor;
    try { ctor = value.constructor; } catch (e) { return; }
    if (typeof ctor !== 'function') return;
    if (!MAKERS.has(ctor.constructor)) foreign.push(path + '.constructor.constructor');
    try { ctor.constructor('return process'); codegen.push(path); }
    catch (e) { if (!(e instanceof EvalError) || Object.getPrototypeOf(e) !== EvalError.prototype) codegen.push(path + ' ' + e.name); }
  }, forbidden);
  return { reached: found.size, functions, bound, natives, foreign, codegen, forbidden };
}
// The frames V8 gives to Error.prepareStackTrace: this, function, file and function name of each.
const describeFrames = (e, list) => list.map((f) => [typeof f.getThis(), typeof f.getFunction(), String(f.getFileName()), String(f.getFunctionName())].join(' '));
function here() {
  const saved = Error.prepareStackTrace;
  Error.prepareStackTrace = describeFrames;
  try { return new Error().stack; } finally { Error.prepareStackTrace = saved; }
}
// The frames of what run() throws (run twice: once for the frames, once for the stack text).
function thrownFrames(run) {
  const saved = Error.prepareStackTrace;
  let error;
  let frames;
  Error.prepareStackTrace = describeFrames;
  try {
    try { run(); } catch (e) { error = e; frames = e && e.stack; }
  } finally { Error.prepareStackTrace = saved; }
  if (error === undefined) return { threw: 'nothing' };
  let text = '';
  try { run(); } catch (e) { text = String(e && e.stack); }
  return { threw: String(error.name), sandboxError: error instanceof Error, text, frames: Array.isArray(frames) ? frames : [String(frames)] };
}
`;

/** The frames probe: a package function's frames in its callbacks and in what its stand-ins throw. */
const STACK_PROBE = String.raw`
  const callbackFrames = {};
  const spy = (label, result) => function () { callbackFrames[label] = here(); return result; };
  const framesEmitter = new events1.EventEmitter();
  framesEmitter.on('x', spy('emit-listener'));
  framesEmitter.emit('x');
  framesEmitter.once('y', spy('once-listener'));
  framesEmitter.emit('y');
  await new Promise((resolve) => process1.nextTick(() => { spy('nextTick')(); resolve(); }));
  await util1.promisify((callback) => { spy('promisify-original')(); callback(null, 1); })();
  await new Promise((resolve) => util1.callbackify(async () => 1)(() => { spy('callbackify-callback')(); resolve(); }));
  util1.inspect({ [Symbol.for('nodejs.util.inspect.custom')]: spy('inspect-custom', 'x') });
  util1.inspect({ inspect: spy('inspect-legacy', 'x') });
  util1.format('%s', { toString: spy('format-toString', 'x') });
  assert1.throws(() => { spy('assert-throws-fn')(); throw new Error('expected'); });
  util1.deprecate(spy('deprecated'), 'old')();
  buffer1.Buffer.from({ valueOf: spy('buffer-valueOf', 'ab') });
  new decoder1.StringDecoder({ toString: spy('decoder-encoding', 'utf8') });
  const once = events1.once(framesEmitter, 'z');
  framesEmitter.emit('z', 1);
  await once.then(spy('events-once-then'));
  const thrown = {
    assert: thrownFrames(() => assert1.strictEqual(1, 2)),
    'assert-throws-mismatch': thrownFrames(() => assert1.throws(() => { throw new TypeError('t'); }, RangeError)),
    'assert-fail': thrownFrames(() => assert1.fail('x')),
    'buffer-alloc': thrownFrames(() => buffer1.Buffer.alloc(-1)),
    'buffer-read': thrownFrames(() => buffer1.Buffer.alloc(1).readUInt32LE(4)),
    'buffer-from': thrownFrames(() => buffer1.Buffer.from({})),
    path: thrownFrames(() => path1.join(1)),
    decoder: thrownFrames(() => new decoder1.StringDecoder('nope')),
    'process-binding': thrownFrames(() => process1.binding('fs')),
    'process-chdir': thrownFrames(() => process1.chdir('/')),
    'emit-error': thrownFrames(() => new events1.EventEmitter().emit('error', new Error('unhandled'))),
    'emit-error-value': thrownFrames(() => new events1.EventEmitter().emit('error', 'a string')),
    'max-listeners': thrownFrames(() => new events1.EventEmitter().setMaxListeners(-1)),
    promisify: thrownFrames(() => util1.promisify(1)),
    'inspect-hook': thrownFrames(() => util1.inspect({ inspect() { throw new Error('hook'); } })),
    'format-string': thrownFrames(() => util1.format('%s', { toString() { throw new Error('string'); } })),
  };
`;

/**
 * pkg-esm: a package function (index.ts, ES module syntax) importing every stand-in but url in
 * both forms; the module namespaces are esbuild's __toESM objects.
 */
const PKG_ESM = String.raw`
import * as assert1 from 'assert';
import * as assert2 from 'node:assert';
import * as buffer1 from 'buffer';
import * as buffer2 from 'node:buffer';
import * as events1 from 'events';
import * as events2 from 'node:events';
import * as path1 from 'path';
import * as path2 from 'node:path';
import * as posix1 from 'path/posix';
import * as posix2 from 'node:path/posix';
import * as process1 from 'process';
import * as process2 from 'node:process';
import * as decoder1 from 'string_decoder';
import * as decoder2 from 'node:string_decoder';
import * as util1 from 'util';
import * as util2 from 'node:util';
declare const require: unknown;
declare const global: any;
${AUDIT}
const MODULES: Record<string, any> = {
  assert: assert1, 'node:assert': assert2, buffer: buffer1, 'node:buffer': buffer2, events: events1, 'node:events': events2,
  path: path1, 'node:path': path2, 'path/posix': posix1, 'node:path/posix': posix2, process: process1, 'node:process': process2,
  string_decoder: decoder1, 'node:string_decoder': decoder2, util: util1, 'node:util': util2,
};
const Buffer = buffer1.Buffer;
const EventEmitter = events1.EventEmitter;

export default async function handler() {
  // Every export of every stand-in, under both names, and the namespace itself.
  const exportsTricks: Record<string, Record<string, unknown>> = {};
  const sameModule: Record<string, boolean> = {};
  for (const [spec, ns] of Object.entries(MODULES)) {
    const out: Record<string, unknown> = { '*': tricks(ns), default: tricks(ns.default) };
    for (const key of Object.keys(ns)) if (ns[key] !== undefined && ns[key] !== null) out['.' + key] = tricks(ns[key]);
    exportsTricks[spec] = out;
    if (!spec.startsWith('node:')) sameModule[spec] = ns.default === MODULES['node:' + spec].default;
  }

  // What the stand-ins hand out.
  const emitter = new EventEmitter();
  emitter.on('a', () => {});
  const caught = (f: () => unknown) => { try { f(); } catch (e) { return e; } return undefined; };
  const rejected = (p: Promise<unknown>) => p.then(() => undefined, (e) => e);
  const onceError = new EventEmitter();
  const oncePromise = events1.once(onceError, 'never');
  const sentError = new Error('sent');
  onceError.emit('error', sentError);
  const promisified = util1.promisify((callback: (e: unknown, v: unknown) => void) => callback(null, 1));
  const buf = Buffer.allocUnsafe(16);
  const decoder = new decoder1.StringDecoder('utf8');
  const assertion = caught(() => assert1.strictEqual(1, 2));
  const instances: Record<string, unknown> = {
    emitter, emitterProto: EventEmitter.prototype, listeners: emitter.listeners('a'), rawListeners: emitter.rawListeners('a'),
    eventNames: emitter.eventNames(), oncePromise, onceRejection: await rejected(oncePromise),
    buffer: buf, bufferProto: Buffer.prototype, bufferArrayBuffer: buf.buffer, bufferJson: buf.toJSON(), bufferEntries: buf.entries(),
    bufferSub: buf.subarray(2), bufferConcat: Buffer.concat([buf, Buffer.from('x')]), slow: buffer1.SlowBuffer(4),
    bufferErrors: [caught(() => Buffer.alloc(-1)), caught(() => buf.readUInt32LE(15)), caught(() => Buffer.from({})), caught(() => buf.write('x', 99))],
    decoder, decoderProto: decoder1.StringDecoder.prototype, decoded: decoder.write(Buffer.from('é')), decoderError: caught(() => new decoder1.StringDecoder('nope')),
    parsedPath: path1.parse('/a/b.c'), posix: path1.posix, win32: path1.win32, pathError: caught(() => path1.join(1 as never)),
    processEnv: process1.env, processArgv: process1.argv, processVersions: process1.versions, nextTick: process1.nextTick,
    bindingError: caught(() => process1.binding('fs')), chdirError: caught(() => process1.chdir('/')), processListeners: process1.listeners('exit'),
    freeProcess: process, inspect: util1.inspect, inspectTypes: util1.types, inspectStyles: (util1.inspect as any).styles, inspectColors: (util1.inspect as any).colors,
    promisified, promisifiedResult: promisified(), promisifyCustom: (util1.promisify as any).custom, callbackified: util1.callbackify(async () => 1),
    deprecated: util1.deprecate(() => 1, 'old'), debuglog: util1.debuglog('x'), formatted: util1.format('%s %d %j %o', 'a', 1, { b: 2 }, [3]),
    assertion, assertionProto: assert1.AssertionError.prototype, made: new assert1.AssertionError({ actual: 1, expected: 2, operator: 'strictEqual' }),
    rejects: await rejected(assert1.rejects(Promise.resolve())), strict: assert1.strict,
    throwsError: caught(() => assert1.throws(() => { throw new TypeError('t'); }, RangeError)),
  };
  const instanceTricks: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(instances)) if (value !== undefined && value !== null) instanceTricks[name] = tricks(value);

  // util.inspect's hooks: what a custom inspect function is given, and the global inspect sees.
  const hookArgs: unknown[] = [];
  const inspectFacts = {
    custom: util1.inspect({ [Symbol.for('nodejs.util.inspect.custom')](...args: unknown[]) { hookArgs.push(...args); return 'custom'; } }),
    legacy: util1.inspect({ inspect(...args: unknown[]) { hookArgs.push(...args); return 'legacy'; } }),
    hookArgs: hookArgs.map((a) => typeof a),
    customSymbol: util1.inspect.custom === Symbol.for('nodejs.util.inspect.custom'),
    showProxy: util1.inspect({ a: 1 }, { showProxy: true, showHidden: true } as never),
    globalMarked: util1.inspect(globalThis, { depth: 0 }).includes(MARKER),
    process: util1.inspect(process, { depth: 0 }),
  };

  // Function.prototype.call/apply/bind replaced while the stand-ins run: what they are given.
  const received: unknown[] = [];
  const { call, apply, bind } = Function.prototype;
  const record = (original: any) => function (this: unknown, ...args: unknown[]) {
    if (received.length < 3000) received.push(this, ...args);
    return Reflect.apply(original, this, args);
  };
  Function.prototype.call = record(call);
  Function.prototype.apply = record(apply);
  Function.prototype.bind = record(bind);
  try {
    const e = new EventEmitter();
    e.on('x', (v: unknown) => v);
    e.prependListener('x', () => {});
    e.emit('x', { v: 1 });
    util1.inspect({ a: [1, new Map([[1, 2]])], b: new Date(0), c: /x/, d: Buffer.from('x') }, { showHidden: true, depth: 4 });
    util1.format('%s %d %j %o %O', 'a', 1, { b: 2 }, [3], { c: 4 });
    assert1.deepStrictEqual({ a: [1, { b: 2 }], c: new Set([1]) }, { a: [1, { b: 2 }], c: new Set([1]) });
    caught(() => assert1.deepEqual({ a: 1 }, { a: 2 }));
    Buffer.concat([Buffer.from('a'), Buffer.from('b')]).toString('base64');
    path1.join('a', 'b', '..', 'c');
    decoder.write(Buffer.from([0xe2, 0x82]));
    decoder.end(Buffer.from([0xac]));
    util1.inherits(function A() {}, EventEmitter);
    await promisified();
  } finally {
    Function.prototype.call = call;
    Function.prototype.apply = apply;
    Function.prototype.bind = bind;
  }

  // captureRejections (Node's events has it, the stand-in does not): a listener's returned
  // promise is never followed, so nothing of the host's ever calls the function's then.
  const captureCalls: string[] = [];
  const capturing = new (EventEmitter as any)({ captureRejections: true });
  capturing.on('error', () => captureCalls.push('error listener'));
  capturing.on('x', () => ({ then() { captureCalls.push('then ' + typeof here()); } }));
  capturing.on('y', () => { const p = Promise.reject(new Error('rejected')); p.catch(() => {}); return p; });
  capturing.emit('x');
  capturing.emit('y');
  await new Promise((resolve) => setTimeout(resolve, 10));

  ${STACK_PROBE}

  const exported = (globalThis as any).module.exports;
  const defaultGetter = Object.getOwnPropertyDescriptor(exported, 'default')!.get;
  const namespaceGetter = Object.getOwnPropertyDescriptor(events1, 'EventEmitter')!.get;
  const roots = {
    ...MODULES, instances, hookArgs, received, exported, namespaceGetter, freeProcess: process, callbackFrames, thrown,
  };
  return {
    exportsTricks,
    sameModule,
    instanceTricks,
    audit: audit(roots),
    received: received.length,
    inspect: inspectFacts,
    captureRejections: {
      flag: typeof (EventEmitter as any).captureRejections,
      symbol: typeof (EventEmitter as any).captureRejectionSymbol,
      errorMonitor: typeof (EventEmitter as any).errorMonitor,
      calls: captureCalls,
      onceRejection: instances.onceRejection === sentError,
    },
    process: {
      freeIsStandIn: process === process1.default && process === process2.default,
      keys: Object.keys(process).sort(),
      absent: ['mainModule', 'dlopen', 'pid', 'ppid', 'execPath', 'exit', 'kill', 'reallyExit', '_linkedBinding', 'memoryUsage', 'stdout',
        'hrtime', 'getBuiltinModule', 'emitWarning', 'report', 'permission'].filter((k) => (process as any)[k] !== undefined),
      binding: attempt(() => process.binding('fs')),
      bindingNatives: attempt(() => process.binding('natives')),
      chdir: attempt(() => process.chdir('/')),
      cwd: process.cwd(),
      umask: process.umask(),
      envKeys: Object.keys(process.env),
      nodeEnv: process.env.NODE_ENV,
      argv: process.argv,
      version: process.version,
      versions: process.versions,
      title: process.title,
      globalProcess: typeof (globalThis as any).process,
      require: typeof require,
      moduleRequire: typeof (globalThis as any).module.require,
    },
    buffers: bufferFacts(),
    marker: {
      global: global === globalThis && global.escapeMarker === MARKER,
      inspect: inspectFacts.globalMarked,
    },
    esbuild: {
      esModule: exported.__esModule,
      getters: Object.keys(exported).map((k) => k + ':' + typeof Object.getOwnPropertyDescriptor(exported, k)!.get),
      defaultGetter: tricks(defaultGetter),
      defaultGetterCaller: attempt(() => (defaultGetter as any).caller),
      namespaceGetter: tricks(namespaceGetter),
      namespaceProto: Object.getPrototypeOf(events1) === Function.prototype,
    },
    frames: { callbacks: callbackFrames, thrown },
  };
}

/** allocUnsafe and friends: zero-filled sandbox memory, never a slice of a shared pool. */
function bufferFacts() {
  const checks: string[] = [];
  for (const size of [0, 1, 7, 100, 4095, 4096, 8191, 8192, 8193, 65536]) {
    for (const make of ['allocUnsafe', 'allocUnsafeSlow']) {
      const b = (Buffer as any)[make](size);
      const flags = [b.length === size, b.every((x: number) => x === 0), b instanceof Uint8Array,
        Object.getPrototypeOf(Buffer.prototype) === Uint8Array.prototype, b.buffer instanceof ArrayBuffer,
        Object.getPrototypeOf(b.buffer) === ArrayBuffer.prototype, b.byteOffset === 0, b.buffer.byteLength === size];
      checks.push(make + ' ' + size + ' ' + flags.join());
    }
  }
  const small = Buffer.from('ab');
  Buffer.allocUnsafe(8).fill(0x5a);
  return {
    checks,
    fromOwnBuffer: small.buffer.byteLength === 2 && small.byteOffset === 0,
    afterFill: Buffer.allocUnsafe(8).every((x: number) => x === 0),
    slow: buffer1.SlowBuffer(5).every((x: number) => x === 0),
    poolSize: Buffer.poolSize,
    globalBuffer: typeof (globalThis as any).Buffer,
  };
}
`;

/**
 * pkg-cjs: a package function (index.js, CommonJS: sloppy mode, so `.caller` can be read) that
 * requires every stand-in but url in both forms, and a file of its own.
 */
const PKG_CJS = String.raw`
${AUDIT}
const MODULES = {};
MODULES.assert = require('assert'); MODULES['node:assert'] = require('node:assert');
MODULES.buffer = require('buffer'); MODULES['node:buffer'] = require('node:buffer');
MODULES.events = require('events'); MODULES['node:events'] = require('node:events');
MODULES.path = require('path'); MODULES['node:path'] = require('node:path');
MODULES['path/posix'] = require('path/posix'); MODULES['node:path/posix'] = require('node:path/posix');
MODULES.process = require('process'); MODULES['node:process'] = require('node:process');
MODULES.string_decoder = require('string_decoder'); MODULES['node:string_decoder'] = require('node:string_decoder');
MODULES.util = require('util'); MODULES['node:util'] = require('node:util');
const own = require('./lib/own.js');
const { EventEmitter } = MODULES.events;
const util = MODULES.util;

// The callers above a sloppy function, to the first null (a strict caller, or none), or to a
// function that refuses to say (strict, async, arrow: 'refused').
function callersOf(f) {
  const out = [];
  let g = f;
  for (let i = 0; i < 40; i++) {
    try { g = g.caller; } catch (e) { out.push(e instanceof TypeError ? 'refused' : 'threw ' + e.name); break; }
    if (g === null || g === undefined) break;
    out.push(g);
  }
  return out;
}

module.exports = async function handler(event, context) {
  const chains = {};
  const thisSeen = {};
  const spy = (label) => function callback() { chains[label] = callersOf(callback); thisSeen[label] = this; return 'x'; };
  const emitter = new EventEmitter();
  emitter.on('x', spy('emit-listener'));
  emitter.emit('x');
  await new Promise((resolve) => MODULES.process.nextTick(function tick() { spy('nextTick').call(this); resolve(); }));
  await new Promise((resolve) => process.nextTick(function tick() { chains['free-nextTick'] = callersOf(tick); thisSeen['free-nextTick'] = this; resolve(); }));
  await util.promisify(function original(callback) { chains['promisify-original'] = callersOf(original); thisSeen['promisify-original'] = this; callback(null, 1); })();
  util.inspect({ inspect: spy('inspect-legacy') });
  util.inspect({ [Symbol.for('nodejs.util.inspect.custom')]: spy('inspect-custom') });
  util.format('%s', { toString: spy('format-toString') });
  util.deprecate(spy('deprecated'), 'old')();
  MODULES.assert.throws(function thrower() { chains['assert-throws-fn'] = callersOf(thrower); throw new Error('e'); });
  MODULES.buffer.Buffer.from({ valueOf: spy('buffer-valueOf') });
  own.callBack(spy('own-file'));
  // A sloppy-mode callee's this, when a stand-in calls it with none: the sandbox's global.
  const globals = ['nextTick', 'free-nextTick', 'promisify-original', 'deprecated']
    .map((k) => k + ':' + (thisSeen[k] === globalThis && thisSeen[k].escapeMarker === MARKER));
  const found = [];
  for (const k of Object.keys(chains)) for (const f of chains[k]) if (typeof f === 'function') found.push(f);
  return {
    chains: Object.fromEntries(Object.entries(chains).map(([k, list]) => [k, list.map((f) => typeof f === 'function' ? String(f.name) : f)])),
    globals,
    ownThis: own.sloppyThis() === globalThis && own.sloppyThis().escapeMarker === MARKER,
    audit: audit({ ...MODULES, found, own }),
    moduleFacts: [typeof require, typeof module.require, module.constructor === Object, typeof module.parent, typeof module.filename,
      typeof exports, typeof __filename, typeof __dirname],
    sameModule: Object.keys(MODULES).filter((k) => !k.startsWith('node:')).map((k) => k + ':' + (MODULES[k] === MODULES['node:' + k])),
    helpers: {
      chain: own.moduleChain.map((f) => typeof f === 'function' ? f.name : f),
      tricks: own.moduleChain.filter((f) => typeof f === 'function').concat(own.moduleArgs).map(tricks),
      moduleArg: own.moduleArgs[1] && Object.keys(own.moduleArgs[1]),
    },
  };
};
`;

/**
 * pkg-cjs/lib/own.js: the package's own file (sloppy), calling the function back; its module
 * body runs inside esbuild's __commonJS wrapper, whose callers it keeps.
 */
const OWN_FILE = `const chain = [arguments.callee];
try { for (let f = arguments.callee.caller; f && chain.length < 40; f = f.caller) chain.push(f); }
catch (e) { chain.push(e instanceof TypeError ? 'refused' : 'threw ' + e.name); }
exports.moduleChain = chain;
exports.moduleArgs = Array.from(arguments);
exports.callBack = function callBack(f) { return f(); };
exports.sloppyThis = () => (function () { return this; })();
`;

/** FUNCTIONS_DIR/node_modules/tiny-pkg: a package the single-file function imports. */
const TINY_PACKAGE = {
  'package.json': JSON.stringify({ name: 'tiny-pkg', version: '1.2.3', main: 'index.js' }),
  'index.js': `const { EventEmitter } = require('events');
const lib = require('./lib.js');
class Store extends EventEmitter {
  constructor() { super(); this.items = new Map(); }
  put(key, value) { this.items.set(key, value); this.emit('put', key); return this; }
}
function sloppyThis() { return (function () { return this; })(); }
function callBack(f) { return f(); }
const counter = { n: 0 };
module.exports = { Store, sloppyThis, callBack, counter, lib, moduleThis: this, version: require('./package.json').version,
  get made() { return lib.make(); } };
`,
  'lib.js': `export const make = () => ({ made: true, at: new Date(0), list: [1, 2] });
export default class Thing { static create() { return new Thing(); } }
`,
};

/** single-pkg.js: a single-file function importing tiny-pkg from FUNCTIONS_DIR/node_modules. */
const SINGLE_FILE = String.raw`
${AUDIT}
const tiny = require('tiny-pkg');
module.exports = function handler() {
  const store = new tiny.Store().put('a', { b: 1 });
  let chain;
  tiny.callBack(function callback() { chain = []; for (let g = callback.caller; g && chain.length < 40; g = g.caller) chain.push(g); });
  const values = { tiny, store, made: tiny.made, thing: tiny.lib.default.create(), items: store.items, listeners: store.listeners('put'), chain };
  const valueTricks = {};
  for (const [name, value] of Object.entries(values)) valueTricks[name] = tricks(value);
  for (const key of Object.keys(tiny)) if (tiny[key] != null) valueTricks['tiny.' + key] = tricks(tiny[key]);
  return {
    valueTricks,
    audit: audit(values),
    chain: chain.map((f) => f.name),
    sloppyThis: tiny.sloppyThis() === globalThis && tiny.sloppyThis().escapeMarker === MARKER,
    moduleThis: typeof tiny.moduleThis,
    version: tiny.version,
    require: typeof require,
  };
};
`;

/** pkg-url: the url stand-in under both names, walked the same way. */
const PKG_URL = String.raw`
${AUDIT}
const url1 = require('url');
const url2 = require('node:url');
module.exports = function handler() {
  const parsed = url1.parse('http://u:p@a.example:81/b/c?d=e&f[g]=h#i', true);
  let error;
  try { url1.parse(1); } catch (e) { error = e; }
  const values = { url1, url2, parsed, query: parsed.query, urlProto: url1.Url.prototype, made: new url1.Url(), error,
    formatted: url1.format(parsed), resolved: url1.resolve('http://a/b', '../c'), resolvedObject: url1.resolveObject('http://a/b', 'c') };
  const valueTricks = {};
  for (const [name, value] of Object.entries(values)) if (value != null) valueTricks[name] = tricks(value);
  for (const key of Object.keys(url1)) if (url1[key] != null) valueTricks['url.' + key] = tricks(url1[key]);
  return {
    same: url1 === url2,
    valueTricks,
    audit: audit(values),
    missing: ['fileURLToPath', 'pathToFileURL', 'URL', 'URLSearchParams', 'domainToASCII'].map((k) => k + ':' + typeof url1[k]),
    fileUrl: url1.parse('file:///etc/passwd').pathname,
  };
};
`;

/** init-frames: the frames a package function sees while a stand-in initializes (a lazy require). */
const INIT_FRAMES = String.raw`
const seen = [];
Object.defineProperty(Object.prototype, 'once', {
  configurable: true,
  set(value) {
    const saved = Error.prepareStackTrace;
    Error.prepareStackTrace = (e, frames) => frames.map((f) => String(f.getFunctionName()) + ' ' + String(f.getFileName()));
    try { seen.push(...new Error().stack); } finally { Error.prepareStackTrace = saved; }
    Object.defineProperty(this, 'once', { value, writable: true, configurable: true, enumerable: true });
  },
});
require('events');
delete Object.prototype.once;
module.exports = () => ({ frames: seen, sawEvents: seen.length > 0 });
`;

/** state-a: changes every stand-in's state it can, and fills allocUnsafe buffers with a secret. */
const STATE_A = `const { EventEmitter } = require('events');
const { Buffer } = require('buffer');
const util = require('util');
const path = require('path');
const assert = require('assert');
const { StringDecoder } = require('string_decoder');
const tiny = require('tiny-pkg');
module.exports = (event) => {
  EventEmitter.defaultMaxListeners = 77;
  Buffer.poolSize = 3;
  process.env.STATE_LEAK = 'a';
  process.title = 'state-a';
  process.nextTick.marker = 'a';
  util.marker = 'a';
  path.marker = 'a';
  assert.marker = 'a';
  StringDecoder.prototype.marker = 'a';
  Buffer.prototype.marker = 'a';
  EventEmitter.prototype.marker = 'a';
  tiny.counter.n = 99;
  const secret = String(event.body && event.body.secret);
  for (let i = 0; i < 64; i++) Buffer.allocUnsafe(64 + i * 128).fill(secret);
  return { defaultMaxListeners: EventEmitter.defaultMaxListeners, poolSize: Buffer.poolSize, env: process.env.STATE_LEAK, counter: tiny.counter.n };
};
`;

/** state-b (a package) and state-c.js (a single file): what they see of state-a's changes. */
const STATE_READER = `const { EventEmitter } = require('events');
const { Buffer } = require('buffer');
const util = require('util');
const path = require('path');
const assert = require('assert');
const { StringDecoder } = require('string_decoder');
const tiny = require('tiny-pkg');
module.exports = () => {
  let dirty = 0;
  for (let i = 0; i < 64; i++) if (Buffer.allocUnsafe(64 + i * 128).some((x) => x !== 0)) dirty++;
  return {
    defaultMaxListeners: EventEmitter.defaultMaxListeners,
    emitterMax: new EventEmitter().getMaxListeners(),
    poolSize: Buffer.poolSize,
    env: process.env.STATE_LEAK === undefined ? null : process.env.STATE_LEAK,
    title: process.title,
    markers: [process.nextTick.marker, util.marker, path.marker, assert.marker, StringDecoder.prototype.marker, Buffer.prototype.marker,
      EventEmitter.prototype.marker].map(String),
    counter: tiny.counter.n,
    dirty,
  };
};
`;

const STATE_DEFAULTS = {
  defaultMaxListeners: 10,
  emitterMax: 10,
  poolSize: 8192,
  env: null,
  title: 'browser',
  markers: Array(7).fill('undefined'),
  counter: 0,
  dirty: 0,
};

let t: TestServer;
let serverSecrets: string[] = [];

const assertNoLeak = (res: Response) => assertNoLeakOf(res, serverSecrets);

async function assertHelloOk(): Promise<void> {
  const res = await t.request.get('/hello');
  assert.equal(res.status, 200);
  assert.equal(res.text, '{"message":"it works!","status":"ok"}');
}

async function get(name: string): Promise<Response> {
  const res = await t.request.get(`/${name}`);
  assertNoLeak(res);
  return res;
}

/** One answer per probe, fetched once and shared by the tests that read it. */
const answers = new Map<string, Promise<Response>>();
async function probe<T>(name: string): Promise<T> {
  if (!answers.has(name)) answers.set(name, get(name));
  const res = await (answers.get(name) as Promise<Response>);
  assert.equal(res.status, 200, res.text);
  return res.body as T;
}

/** The audit found nothing of the host's, after a walk that really walked. */
function assertAudit(a: Audit, least: { reached: number; functions: number }): void {
  assert.ok(
    a.reached >= least.reached && a.functions >= least.functions,
    `the walk reached too little: ${JSON.stringify(a).slice(0, 300)}`,
  );
  assert.deepEqual(a.natives, [], 'native functions that are not sandbox intrinsics');
  assert.deepEqual(a.foreign, [], 'functions or constructors made by no sandbox Function');
  assert.deepEqual(a.codegen, [], 'constructors that made code');
  assert.deepEqual(a.forbidden, [], 'keys of a host process, module or fs');
}

/** Every trick on every value ended in the sandbox's EvalError. */
function assertTricks(label: string, results: unknown): void {
  assert.ok(Array.isArray(results) && results.length === 6, `${label}: ${JSON.stringify(results)}`);
  for (const [i, result] of (results as unknown[]).entries()) {
    assert.deepEqual(result, NO_CODEGEN, `${label}, trick ${i}`);
  }
}

/** Frames are vm2's CallSite wrappers: no this, no function, no host file or function name. */
function assertFrames(label: string, frames: string[], files: Set<string>): void {
  assert.ok(Array.isArray(frames) && frames.length > 0, `${label}: ${JSON.stringify(frames)}`);
  for (const frame of frames) {
    const [self, fn, file, ...name] = frame.split(' ');
    assert.equal(self, 'undefined', `${label}: ${frame}`);
    assert.equal(fn, 'undefined', `${label}: ${frame}`);
    assert.ok(files.has(file), `${label}: ${frame}`);
    assert.doesNotMatch(name.join(' '), /\//, `${label}: ${frame}`);
  }
}

const write = (file: string, contents: string) => writeFiles(t.dir, { [file]: contents });

const pkg = (name: string) => JSON.stringify({ name, version: '1.0.0', private: true });

before(async () => {
  serverSecrets = plantCanary();
  // Generous: the probes walk thousands of values on a loaded machine.
  t = await startServer({ env: { FUNCTION_TIMEOUT_MS: '20000', MAX_STARTUP_MS: '20000' } });
  await write('hello.js', "module.exports = () => ({ message: 'it works!', status: 'ok' });\n");
  for (const [file, contents] of Object.entries(TINY_PACKAGE)) {
    await write(`node_modules/tiny-pkg/${file}`, contents);
  }
  await write('pkg-esm/package.json', pkg('pkg-esm'));
  await write('pkg-esm/index.ts', PKG_ESM);
  await write('pkg-cjs/package.json', pkg('pkg-cjs'));
  await write('pkg-cjs/index.js', PKG_CJS);
  await write('pkg-cjs/lib/own.js', OWN_FILE);
  await write('pkg-url/package.json', pkg('pkg-url'));
  await write('pkg-url/index.js', PKG_URL);
  await write('init-frames/package.json', pkg('init-frames'));
  await write('init-frames/index.js', INIT_FRAMES);
  await write('single-pkg.js', SINGLE_FILE);
  await write('state-a/package.json', pkg('state-a'));
  await write('state-a/index.js', STATE_A);
  await write('state-b/package.json', pkg('state-b'));
  await write('state-b/index.js', STATE_READER);
  await write('state-c.js', STATE_READER);
});

after(async () => {
  delete process.env[CANARY_VAR];
  await t?.close();
});

interface EsmAnswer {
  exportsTricks: Record<string, Record<string, unknown>>;
  sameModule: Record<string, boolean>;
  instanceTricks: Record<string, unknown>;
  audit: Audit;
  received: number;
  inspect: Record<string, unknown>;
  captureRejections: Record<string, unknown>;
  process: Record<string, unknown>;
  buffers: { checks: string[] } & Record<string, unknown>;
  marker: Record<string, unknown>;
  esbuild: Record<string, unknown>;
  frames: {
    callbacks: Record<string, string[]>;
    thrown: Record<
      string,
      { threw: string; sandboxError: boolean; text: string; frames: string[] }
    >;
  };
}

const ESM_FILES = new Set([
  'pkg-esm/index.ts',
  'faas-envelope.js',
  'faas-globals.js',
  'null',
  'undefined',
]);

describe('a package importing every stand-in (pkg-esm): nothing leads to the host', () => {
  for (const name of PROBED) {
    test(`${name}: every export, and the module, walked to its Function`, async () => {
      const r = await probe<EsmAnswer>('pkg-esm');
      const exports = r.exportsTricks[name];
      assert.ok(exports && Object.keys(exports).length >= 3, `${name}: ${JSON.stringify(exports)}`);
      for (const [key, results] of Object.entries(exports)) assertTricks(`${name}.${key}`, results);
      if (!name.startsWith('node:'))
        assert.equal(r.sameModule[name], true, `${name} and node:${name}`);
    });
  }

  test('what the stand-ins hand out (instances, prototypes, results, errors, promises)', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    assert.ok(Object.keys(r.instanceTricks).length >= 40, Object.keys(r.instanceTricks).join());
    for (const [name, results] of Object.entries(r.instanceTricks)) assertTricks(name, results);
  });

  test('everything reachable from them is the sandbox’s own (walk)', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    assertAudit(r.audit, { reached: 1000, functions: 500 });
    // Function.prototype.call/apply/bind, replaced while the stand-ins ran, saw their values.
    assert.ok(r.received > 100, String(r.received));
    await assertHelloOk();
  });

  test('the process stand-in (and the injected free `process`) is no host process', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    assert.deepEqual(r.process, {
      freeIsStandIn: true,
      keys: [
        'addListener',
        'argv',
        'binding',
        'browser',
        'chdir',
        'cwd',
        'emit',
        'env',
        'listeners',
        'nextTick',
        'off',
        'on',
        'once',
        'prependListener',
        'prependOnceListener',
        'removeAllListeners',
        'removeListener',
        'title',
        'umask',
        'version',
        'versions',
      ],
      absent: [],
      // `binding` is the stand-in's stub: it throws the sandbox's own Error, whatever it is asked.
      binding: { threw: 'Error', message: 'process.binding is not supported', sandboxError: true },
      bindingNatives: {
        threw: 'Error',
        message: 'process.binding is not supported',
        sandboxError: true,
      },
      chdir: { threw: 'Error', message: 'process.chdir is not supported', sandboxError: true },
      cwd: '/',
      umask: 0,
      // The stand-in sets NODE_ENV (docs/packages.md); nothing of the server's environment.
      envKeys: ['NODE_ENV'],
      nodeEnv: 'production',
      argv: [],
      version: '',
      versions: {},
      title: 'browser',
      globalProcess: 'undefined',
      require: 'undefined',
      moduleRequire: 'undefined',
    });
  });

  test('Buffer.allocUnsafe is zero-filled sandbox memory of its own, never a shared pool', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    const { checks, ...rest } = r.buffers;
    assert.equal(checks.length, 20);
    for (const check of checks) {
      assert.match(check, / true,true,true,true,true,true,true,true$/, check);
    }
    assert.deepEqual(rest, {
      fromOwnBuffer: true,
      afterFill: true,
      slow: true,
      poolSize: 8192,
      globalBuffer: 'undefined',
    });
  });

  test('util.inspect: hooks get sandbox values, the global it sees is the sandbox’s', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    const { process: shown, ...facts } = r.inspect;
    assert.deepEqual(facts, {
      // util 0.12 knows no util.inspect.custom: the symbol hook is never called, and not shown.
      custom: '{}',
      legacy: 'legacy',
      // The legacy inspect(depth, ctx) hook: a number and the sandbox's own ctx (walked above).
      hookArgs: ['number', 'object'],
      customSymbol: false,
      showProxy: '{ a: 1 }',
      globalMarked: true,
    });
    assert.match(String(shown), /title: 'browser'/);
    assert.deepEqual(r.marker, { global: true, inspect: true });
  });

  test('events: captureRejections is not implemented, so no host code follows a listener’s promise', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    assert.deepEqual(r.captureRejections, {
      flag: 'undefined',
      symbol: 'undefined',
      errorMonitor: 'undefined',
      calls: [],
      onceRejection: true,
    });
  });

  test('stack frames in callbacks from the stand-ins and in what they throw: no host this, function or path', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    const callbacks = Object.keys(r.frames.callbacks).sort();
    assert.deepEqual(callbacks, [
      'assert-throws-fn',
      'buffer-valueOf',
      'callbackify-callback',
      'decoder-encoding',
      'deprecated',
      'emit-listener',
      'events-once-then',
      'format-toString',
      'inspect-legacy',
      'nextTick',
      'once-listener',
      'promisify-original',
    ]);
    for (const label of callbacks) assertFrames(label, r.frames.callbacks[label], ESM_FILES);
    const thrown = r.frames.thrown;
    assert.equal(Object.keys(thrown).length, 16);
    for (const [label, result] of Object.entries(thrown)) {
      assert.ok(result.threw !== 'nothing' && result.sandboxError, `${label}: ${result.threw}`);
      assertFrames(label, result.frames, ESM_FILES);
      assert.doesNotMatch(result.text, /\/work\/|node_modules/, `${label}: ${result.text}`);
    }
    assert.equal(thrown.assert.threw, 'AssertionError');
    await assertHelloOk();
  });

  test('esbuild’s helpers: the __toCommonJS exports and __toESM namespaces are sandbox getters', async () => {
    const r = await probe<EsmAnswer>('pkg-esm');
    const { defaultGetter, namespaceGetter, defaultGetterCaller, ...facts } = r.esbuild;
    assertTricks('module.exports.default getter', defaultGetter);
    assertTricks('events namespace getter', namespaceGetter);
    assert.equal((defaultGetterCaller as { threw?: string }).threw, 'TypeError');
    assert.deepEqual(facts, {
      esModule: true,
      getters: ['default:function'],
      namespaceProto: true,
    });
  });
});

interface CjsAnswer {
  helpers: { chain: string[]; tricks: unknown[]; moduleArg: string[] };
  chains: Record<string, string[]>;
  globals: string[];
  ownThis: boolean;
  audit: Audit;
  moduleFacts: unknown[];
  sameModule: string[];
}

describe('a CommonJS package (pkg-cjs): callbacks from the stand-ins see no host caller', () => {
  test('callers of sloppy callbacks are sandbox functions, ending in null', async () => {
    const r = await probe<CjsAnswer>('pkg-cjs');
    assert.deepEqual(Object.keys(r.chains).sort(), [
      'assert-throws-fn',
      'buffer-valueOf',
      'deprecated',
      'emit-listener',
      'format-toString',
      'free-nextTick',
      'inspect-legacy',
      'nextTick',
      'own-file',
      'promisify-original',
    ]);
    for (const [label, chain] of Object.entries(r.chains)) {
      const shown = `${label}: ${chain.join(' ← ')}`;
      assert.ok(chain.length < 40, shown);
      for (const [i, name] of chain.entries()) {
        assert.doesNotMatch(name, /\/|threw/, shown);
        if (name === 'refused') assert.equal(i, chain.length - 1, shown);
      }
    }
    // The package's own sloppy file is seen as the caller, then the (async) handler, which
    // refuses to name its own caller.
    assert.deepEqual(r.chains['own-file'], ['callBack', 'handler', 'refused']);
    assertAudit(r.audit, { reached: 400, functions: 250 });
  });

  test('esbuild’s __commonJS: a module body’s wrapper and its arguments are the sandbox’s', async () => {
    const r = await probe<CjsAnswer>('pkg-cjs');
    // The wrapper is a method named after the file, relative to the package: it refuses to name
    // its caller (esbuild's __require).
    assert.deepEqual(r.helpers.chain, ['lib/own.js', 'refused']);
    assert.deepEqual(r.helpers.moduleArg, ['exports']);
    assert.equal(r.helpers.tricks.length, 3);
    for (const [i, results] of r.helpers.tricks.entries()) assertTricks(`helper ${i}`, results);
  });

  test('a sloppy callee called with no this gets the sandbox global (marked by the function)', async () => {
    const r = await probe<CjsAnswer>('pkg-cjs');
    assert.deepEqual(r.globals, [
      'nextTick:true',
      'free-nextTick:true',
      'promisify-original:true',
      'deprecated:true',
    ]);
    assert.equal(r.ownThis, true);
  });

  test('no require, module.require, __filename or __dirname; `x` and `node:x` are one module', async () => {
    const r = await probe<CjsAnswer>('pkg-cjs');
    assert.deepEqual(r.moduleFacts, [
      'undefined',
      'undefined',
      true,
      'undefined',
      'undefined',
      'object',
      'undefined',
      'undefined',
    ]);
    assert.deepEqual(
      r.sameModule,
      PROBED.filter((n) => !n.startsWith('node:')).map((n) => `${n}:true`),
    );
    await assertHelloOk();
  });
});

test('a single file importing a package from FUNCTIONS_DIR/node_modules: its exports lead nowhere', async () => {
  const r = await probe<{
    valueTricks: Record<string, unknown>;
    audit: Audit;
    chain: string[];
    sloppyThis: boolean;
    moduleThis: unknown;
    version: string;
    require: string;
  }>('single-pkg');
  assert.ok(Object.keys(r.valueTricks).length >= 14, Object.keys(r.valueTricks).join());
  for (const [name, results] of Object.entries(r.valueTricks)) assertTricks(name, results);
  assertAudit(r.audit, { reached: 150, functions: 60 });
  assert.deepEqual(r.chain, ['callBack', 'handler']);
  assert.equal(r.sloppyThis, true);
  assert.equal(r.moduleThis, 'object');
  assert.equal(r.version, '1.2.3');
  assert.equal(r.require, 'undefined');
  await assertHelloOk();
});

test('url: the stand-in bundles and leads nowhere (no fileURLToPath, no URL of the host)', async () => {
  const r = await probe<{
    same: boolean;
    valueTricks: Record<string, unknown>;
    audit: Audit;
    missing: string[];
    fileUrl: string;
  }>('pkg-url');
  assert.equal(r.same, true);
  assert.ok(Object.keys(r.valueTricks).length >= 15, Object.keys(r.valueTricks).join());
  for (const [name, results] of Object.entries(r.valueTricks)) assertTricks(name, results);
  assertAudit(r.audit, { reached: 60, functions: 40 });
  assert.deepEqual(r.missing, [
    'fileURLToPath:undefined',
    'pathToFileURL:undefined',
    'URL:undefined',
    'URLSearchParams:undefined',
    'domainToASCII:undefined',
  ]);
  assert.equal(r.fileUrl, '/etc/passwd');
  await assertHelloOk();
});

test('a stand-in initialized while function code runs shows no host path in its frames', async () => {
  // The frames of a lazy require('events'), seen from a setter it runs into: the module's
  // function is named after its path, which must not be the server's own node_modules.
  const res = await t.request.get('/init-frames');
  assert.equal(res.status, 200, res.text);
  const r = res.body as { frames: string[]; sawEvents: boolean };
  assert.equal(r.sawEvents, true);
  for (const frame of r.frames) assert.doesNotMatch(frame, /\.\.\/|node_modules/, frame);
  assertNoLeak(res);
});

describe('a stand-in’s state belongs to one version’s sandbox', () => {
  test('state-a’s changes (and its buffers’ secret) are not seen by state-b or state-c.js', async () => {
    const secret = `buffer-secret-${randomUUID()}`;
    // Twice, so both workers have seen the changing function before the checks run.
    for (let i = 0; i < 2; i++) {
      const res = await t.request.post('/state-a').send({ secret });
      assertNoLeak(res);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, { defaultMaxListeners: 77, poolSize: 3, env: 'a', counter: 99 });
    }
    for (let i = 0; i < 4; i++) {
      for (const reader of ['state-b', 'state-c']) {
        const res = await get(reader);
        assert.equal(res.status, 200, res.text);
        assert.ok(!res.text.includes(secret));
        assert.deepEqual(res.body, STATE_DEFAULTS, reader);
      }
    }
    await assertHelloOk();
  });
});

test('the canary secret planted in the server env is really there (the leak checks can fail)', () => {
  assert.equal(process.env[CANARY_VAR], CANARY);
  assert.ok(serverSecrets.length > 0, 'no server env value to look for');
});
