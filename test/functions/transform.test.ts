/**
 * transform.ts (and compile-errors.ts): function files in every form of docs/spec.md §2 → what the sandbox runs. Compiled code
 * runs in a real vm2 VM set up by the real envelope (module, exports, console, stack format), the
 * way a worker runs it; positions are checked against where the text is in the user's file.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { isBuiltin } from 'node:module';
import { test } from 'node:test';
import { VM, VMScript } from 'vm2';
import { FunctionCompileError } from '../../src/errors';
import { STAND_IN_NAMES, checkSyntax } from '../../src/functions/compile-errors';
import { compileFunction, originalPosition, remapStack } from '../../src/functions/transform';
import type { CompiledFunction } from '../../src/functions/transform';
import { ENVELOPE_SOURCE } from '../../src/worker/envelope';

/** 1-based line and UTF-16 column of the nth occurrence of `marker` in `source`. */
function where(source: string, marker: string, nth = 0): { line: number; column: number } {
  let index = -1;
  for (let i = 0; i <= nth; i++) {
    index = source.indexOf(marker, index + 1);
    assert.ok(index >= 0, `marker ${JSON.stringify(marker)} not in the source`);
  }
  const before = source.slice(0, index).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

interface Loaded {
  vm: VM;
  completion: unknown;
  exports: Record<string, unknown> | ((...args: unknown[]) => unknown);
  /** The envelope's load(completion): the invoke function, or why there is none. */
  load: (completion: unknown) => unknown;
}

/** Runs compiled code as a worker does: envelope first, then the file, in a fresh vm2 VM. */
function loadInSandbox(fn: CompiledFunction): Loaded {
  const vm = new VM({ eval: false, wasm: false, allowAsync: true });
  const setup = vm.run(ENVELOPE_SOURCE) as (...host: unknown[]) => (completion: unknown) => unknown;
  const load = setup(
    () => undefined,
    () => 0,
    () => undefined,
  );
  const completion: unknown = vm.run(new VMScript(fn.code, fn.filename).compile());
  const exports = vm.run('module.exports') as Loaded['exports'];
  return { vm, completion, exports, load };
}

/** What the lead's pick will take: module.exports as a function, its default, its handler, the completion. */
function handlerOf(loaded: Loaded): (...args: unknown[]) => unknown {
  const { exports, completion } = loaded;
  if (typeof exports === 'function') return exports;
  for (const key of ['default', 'handler']) {
    if (typeof exports[key] === 'function') return exports[key] as (...args: unknown[]) => unknown;
  }
  assert.equal(typeof completion, 'function', 'the file yields no function');
  return completion as (...args: unknown[]) => unknown;
}

async function compileError(source: string, file: string): Promise<FunctionCompileError> {
  try {
    await compileFunction(source, file);
  } catch (err) {
    assert.ok(err instanceof FunctionCompileError, String(err));
    assert.equal(err.code, 'FUNCTION_COMPILE_ERROR');
    return err;
  }
  assert.fail(`${file} compiled`);
}

interface Form {
  what: string;
  file: string;
  source: string;
  /** Whether esbuild must have run (a .js file in the seed or CommonJS form runs untouched). */
  transformed: boolean;
  /** The handler's answer to { x: 2 }. */
  result: unknown;
  config?: unknown;
}

const FORMS: Form[] = [
  {
    what: 'seed form',
    file: 'seed.js',
    source: '(event, context) => {\n  return { got: event.x, fn: typeof context };\n};\n',
    transformed: false,
    result: { got: 2, fn: 'object' },
  },
  {
    what: 'async seed form without ;',
    file: 'a/seed.js',
    source: 'async (event) => ({ got: event.x * 10 })\n',
    transformed: false,
    result: { got: 20 },
  },
  {
    what: 'CommonJS module.exports',
    file: 'cjs.js',
    source: 'const k = 3;\nmodule.exports = (event) => event.x * k;\n',
    transformed: false,
    result: 6,
  },
  {
    what: 'CommonJS exports.handler and exports.config',
    file: 'cjs2.js',
    source:
      'exports.handler = async (event) => `x=${event.x}`;\nexports.config = { timeoutMs: 50 };\n',
    transformed: false,
    result: 'x=2',
    config: { timeoutMs: 50 },
  },
  {
    what: 'ESM export default arrow',
    file: 'esm.js',
    source: "export default async (e) => 'ok ' + e.x;\n",
    transformed: true,
    result: 'ok 2',
  },
  {
    what: 'ESM export default function declaration with export const config',
    file: 'a/b/esm.js',
    source:
      'export const config = { methods: ["GET"], env: { A: "1" } };\n' +
      'export default function handler(event) {\n  return { got: event.x, env: config.env.A };\n}\n',
    transformed: true,
    result: { got: 2, env: '1' },
    config: { methods: ['GET'], env: { A: '1' } },
  },
  {
    what: 'ESM export const handler',
    file: 'esm-handler.js',
    source: 'const twice = (n) => n * 2;\nexport const handler = (event) => twice(event.x);\n',
    transformed: true,
    result: 4,
  },
  {
    what: 'ESM export { h as handler, c as config }',
    file: 'esm-list.js',
    source:
      'function h(e) { return [e.x, c.timeoutMs]; }\nconst c = { timeoutMs: 99 };\nexport { h as handler, c as config };\n',
    transformed: true,
    result: [2, 99],
    config: { timeoutMs: 99 },
  },
  {
    what: 'TypeScript seed form',
    file: 'ts-seed.ts',
    source: '(event: any) => ({ ok: 1, x: event.x as number });\n',
    transformed: true,
    result: { ok: 1, x: 2 },
  },
  {
    what: 'TypeScript seed form after interfaces, type aliases and an enum',
    file: 'a/ts-seed.ts',
    source:
      'interface Event { x: number }\ntype Out = { n: number; kind: Kind };\n' +
      'const enum Kind { A = 7 }\n' +
      'async (event: Event): Promise<Out> => ({ n: event.x, kind: Kind.A });\n',
    transformed: true,
    result: { n: 2, kind: 7 },
  },
  {
    what: 'TypeScript seed form beside an `import type`',
    file: 'ts-seed-type.ts',
    source: "import type { Ev } from './types';\n(event: Ev) => event.x + 1;\n",
    transformed: true,
    result: 3,
  },
  {
    what: 'TypeScript with a value import used only as a type (erased with the types)',
    file: 'ts-type-only.ts',
    source:
      "import { Handler } from 'aws-lambda';\nimport type { Ev } from './ev';\n" +
      'export const handler: Handler = (event: Ev) => event.x + 2;\n',
    transformed: true,
    result: 4,
  },
  {
    what: 'TypeScript namespace, parameter properties and an abstract class',
    file: 'ts-ns.ts',
    source:
      'namespace Util {\n  export const k = 5;\n}\n' +
      'abstract class Base { abstract n(): number }\n' +
      'class Point extends Base {\n  constructor(private readonly x: number, public y = 1) { super(); }\n' +
      '  n(): number { return this.x * Util.k + this.y; }\n}\n' +
      'export default (event: { x: number }) => new Point(event.x).n();\n',
    transformed: true,
    result: 11,
  },
  {
    what: 'TypeScript CommonJS module.exports',
    file: 'ts-cjs.ts',
    source: 'const f = (event: { x: number }): number => event.x - 1;\nmodule.exports = f;\n',
    transformed: true,
    result: 1,
  },
  {
    what: 'TypeScript export =',
    file: 'ts-eq.ts',
    source: 'export = (event: { x: number }): string => String(event.x);\n',
    transformed: true,
    result: '2',
  },
  {
    what: 'TypeScript exports.handler and exports.config',
    file: 'ts-exports.ts',
    source:
      'exports.handler = (event: { x: number }) => event.x ** 3;\nexports.config = { rawBody: true };\n',
    transformed: true,
    result: 8,
    config: { rawBody: true },
  },
  {
    what: 'TypeScript export default with a typed config',
    file: 'ts/esm.ts',
    source:
      'interface Config { timeoutMs?: number; methods?: string[] }\n' +
      "export const config: Config = { timeoutMs: 1000, methods: ['POST'] };\n" +
      'export default async function (event: { x: number }): Promise<{ y: number }> {\n' +
      '  return { y: event.x + (config.timeoutMs ?? 0) };\n}\n',
    transformed: true,
    result: { y: 1002 },
    config: { timeoutMs: 1000, methods: ['POST'] },
  },
  {
    what: 'TypeScript export const handler with a class, generics and a decorator',
    file: 'ts-class.ts',
    source:
      'function logged<T>(value: T, _context: unknown): T { return value; }\n' +
      '@logged\nclass Box<T> {\n  #items: T[] = [];\n  accessor label = "box";\n' +
      '  add(item: T): this { this.#items.push(item); return this; }\n' +
      '  get size(): number { return this.#items.length; }\n}\n' +
      'export const handler = (event: { x: number }) => {\n' +
      '  const box = new Box<number>().add(event.x).add(1);\n  return [box.size, box.label];\n};\n',
    transformed: true,
    result: [2, 'box'],
  },
];

for (const form of FORMS) {
  void test(`compileFunction: ${form.what} (${form.file}) runs in vm2 and answers`, async () => {
    const compiled = await compileFunction(form.source, form.file);
    assert.equal(compiled.filename, form.file);
    if (form.transformed) {
      assert.notEqual(compiled.code, form.source);
      assert.ok(compiled.sourceMap, 'a transformed file has a source map');
      assert.deepEqual(compiled.sourceMap.sources, [form.file]);
    } else {
      assert.equal(compiled.code, form.source, 'a .js script runs untouched');
      assert.equal(compiled.sourceMap, undefined);
    }
    const loaded = loadInSandbox(compiled);
    const result = await handlerOf(loaded)({ x: 2 }, { requestId: 'r' });
    assert.deepEqual(JSON.parse(JSON.stringify(result)), form.result);
    const config = typeof loaded.exports === 'function' ? undefined : loaded.exports.config;
    assert.deepEqual(
      config === undefined ? undefined : JSON.parse(JSON.stringify(config)),
      form.config,
    );
  });
}

void test('compileFunction: ESM exports are getters on module.exports that vm2 code and the envelope can read', async () => {
  const source =
    "export const handler = async (event) => 'h' + event.x;\n" +
    "export default (event) => 'd' + event.x;\nexport const config = { timeoutMs: 5 };\n";
  const loaded = loadInSandbox(await compileFunction(source, 'getters.js'));
  // Read from inside the sandbox, as the envelope's pick does.
  const seen = loaded.vm.run(
    'JSON.stringify({ keys: Object.keys(module.exports), d: typeof module.exports.default, ' +
      'h: typeof module.exports.handler, c: module.exports.config, esm: module.exports.__esModule })',
  ) as string;
  assert.deepEqual(JSON.parse(seen), {
    keys: ['config', 'default', 'handler'],
    d: 'function',
    h: 'function',
    c: { timeoutMs: 5 },
    esm: true,
  });
  // The envelope takes .default first (then .handler), through the getters, and runs it.
  // The envelope's load answers [invoke, configJson].
  const [invoke, configJson] = loaded.load(loaded.completion) as [
    (eventJson: string, contextJson: string) => unknown,
    string | undefined,
  ];
  assert.equal(typeof invoke, 'function');
  assert.equal(configJson, '{"timeoutMs":5}');
  assert.equal(await invoke('{"x":1}', '{"deadline":0}'), 'Sd1');
});

void test('compileFunction: the TypeScript seed form yields its function as the completion value, through the envelope', async () => {
  const sources = [
    '(event: { x: number }) => ({ ok: event.x });\n',
    'type E = { x: number };\nconst k: number = 1;\nasync (event: E) => ({ ok: event.x * k });\n',
    "import type { E } from 'types';\n(event: E) => ({ ok: event.x });\n",
  ];
  for (const source of sources) {
    const loaded = loadInSandbox(await compileFunction(source, 'seed.ts'));
    assert.equal(typeof loaded.completion, 'function', source);
    const [invoke] = loaded.load(loaded.completion) as [
      (eventJson: string, contextJson: string) => unknown,
    ];
    assert.equal(typeof invoke, 'function', source);
    assert.equal(await invoke('{"x":4}', '{"deadline":0}'), 'J{"ok":4}', source);
  }
});

void test('compileFunction: a .js script is returned untouched, with identity positions', async () => {
  const sources = [
    "(event) => {\n  throw new Error('x');\n};\n",
    '#!/usr/bin/env node\nmodule.exports = () => 1;\n',
    '// export default 1\nconst s = "export default 2";\n(e) => s;\n',
    // Mentions of require that are no call of the sandbox's missing one: read, then untouched.
    "// require('lodash')\nconst s = \"require('x')\";\n(e) => s + typeof require;\n",
    "function require(n) {\n  return n;\n}\nmodule.exports = () => require('own');\n",
  ];
  for (const source of sources) {
    const compiled = await compileFunction(source, 'plain.js');
    assert.equal(compiled.code, source);
    assert.equal(compiled.sourceMap, undefined);
    assert.deepEqual(originalPosition(compiled, 7, 3), { line: 7, column: 3 });
    const stack = 'Error: x\n    at <anonymous> (plain.js:2:9)';
    assert.equal(remapStack(compiled, stack), stack);
  }
});

void test('compileFunction: a function that defines its own require runs it (script, ESM, TypeScript)', async () => {
  const sources: [string, string][] = [
    [
      'own.js',
      "function require(n) {\n  return 'own ' + n;\n}\nmodule.exports = () => require('x');\n",
    ],
    ['own-seed.js', "(event, require = (n) => 'own ' + n) => require('x');\n"],
    ['own-esm.js', "const require = (n) => 'own ' + n;\nexport default () => require('x');\n"],
    [
      'own-ts.ts',
      "const require = (n: string): string => 'own ' + n;\nexport default () => require('x');\n",
    ],
  ];
  for (const [file, source] of sources) {
    const loaded = loadInSandbox(await compileFunction(source, file));
    assert.equal(await handlerOf(loaded)({}), 'own x', file);
  }
});

void test('compileFunction: ES module code runs in strict mode; TypeScript CommonJS stays sloppy like .js', async () => {
  const esm = loadInSandbox(
    await compileFunction('export default () => { undeclaredA = 1; return 1; };\n', 'strict.js'),
  );
  assert.throws(
    () => handlerOf(esm)(),
    (err: Error) => err.name === 'ReferenceError',
  );
  const esmWithHashbang = loadInSandbox(
    await compileFunction(
      '#!/usr/bin/env node\nexport default function () { return this; }\n',
      'hb.js',
    ),
  );
  assert.equal(handlerOf(esmWithHashbang).call(undefined), undefined);
  const cjs = loadInSandbox(
    await compileFunction(
      'module.exports = (): number => { undeclaredB = 2; return 2; };\n',
      'sloppy.ts',
    ),
  );
  assert.equal(handlerOf(cjs)(), 2);
});

interface Refusal {
  what: string;
  file: string;
  source: string;
  shown: string;
  /** Text whose position is the error's position. */
  at: string;
  more?: number;
}

const IMPORTS: Refusal[] = [
  {
    what: 'import default',
    file: 'i1.js',
    source: "const a = 1;\n\nimport x from 'y';\nexport default () => x;\n",
    shown: "import x from 'y'",
    at: "'y'",
  },
  {
    what: 'named import in TypeScript (used as a value)',
    file: 'i2.ts',
    source: "import { helper } from './lib';\nexport default (e: unknown) => helper(e);\n",
    shown: "import { helper } from './lib'",
    at: "'./lib'",
  },
  {
    what: 'namespace import of a node built-in',
    file: 'i3.ts',
    source:
      "import * as fs from 'node:fs';\nexport const handler = () => fs.readFileSync('/etc/passwd', 'utf8');\n",
    shown: "import * as fs from 'node:fs'",
    at: "'node:fs'",
  },
  {
    what: 'side-effect import of an absolute path',
    file: 'i4.ts',
    source: "// setup\nimport '/etc/passwd';\nexport default () => 1;\n",
    shown: "import '/etc/passwd'",
    at: "'/etc/passwd'",
  },
  {
    what: 'import with attributes',
    file: 'i5.js',
    source: "import data from './data.json' with { type: 'json' };\nexport default () => data;\n",
    shown: "import data from './data.json' with { type: 'json' }",
    at: "'./data.json'",
  },
  {
    what: 'export * from',
    file: 'i6.js',
    source: "export * from 'q';\n",
    shown: "export * from 'q'",
    at: "'q'",
  },
  {
    what: 'export { a } from',
    file: 'i7.ts',
    source: "export const handler = () => 1;\nexport { a as config } from './c';\n",
    shown: "export { a as config } from './c'",
    at: "'./c'",
  },
  {
    what: 'dynamic import with a literal',
    file: 'i8.js',
    source: "export default async () => {\n  const m = await import('zz');\n  return m;\n};\n",
    shown: "import('zz')",
    at: "'zz'",
  },
  {
    what: 'dynamic import with a computed name, inside try',
    file: 'i9.ts',
    source:
      'export default async (n: string) => {\n  try { return await import(n); } catch { return null; }\n};\n',
    shown: 'import(…)',
    at: 'import(n)',
  },
  {
    what: 'require in a TypeScript CommonJS file',
    file: 'i10.ts',
    source: "const fs = require('fs');\nmodule.exports = () => fs;\n",
    shown: "require('fs')",
    at: "'fs'",
  },
  {
    what: 'require with a computed name, inside try',
    file: 'i11.js',
    source: 'export default (n) => {\n  try { return require(n); } catch { return null; }\n};\n',
    shown: 'require(…)',
    at: 'require(n)',
  },
  {
    what: 'require.resolve',
    file: 'i12.ts',
    source: "const where = require.resolve('q');\nmodule.exports = () => where;\n",
    shown: "require.resolve('q')",
    at: "'q'",
  },
  {
    what: 'TypeScript import = require',
    file: 'i13.ts',
    source: "import x = require('y');\nexport default () => x;\n",
    shown: "require('y')",
    at: "'y'",
  },
  {
    what: 'several imports: the first, and how many more',
    file: 'i14.js',
    source:
      "import b from 'b';\nimport a from 'a';\nimport c from 'c';\nexport default () => a + b + c;\n",
    shown: "import b from 'b'",
    at: "'b'",
    more: 2,
  },
  {
    what: 'an import after a non-ASCII line',
    file: 'i15.ts',
    source: "const s = 'héllo 😀'; import { z } from 'zé';\nexport default () => s + z;\n",
    shown: "const s = 'héllo 😀'; import { z } from 'zé'",
    at: "'zé'",
  },
];

/** A .js script runs untouched, yet a call of the free `require` in it is refused all the same. */
const SCRIPT_REQUIRES: Refusal[] = [
  {
    what: 'require in a CommonJS script',
    file: 's1.js',
    source:
      "// uses lodash\n\nconst _ = require('lodash');\nmodule.exports = () => _.chunk([1], 1);\n",
    shown: "require('lodash')",
    at: "'lodash'",
  },
  {
    what: 'require inside a seed-form function, after a string and a comment that mention it',
    file: 's2.js',
    source:
      "(event) => {\n  // require('no')\n  const s = \"require('no')\";\n  return require('fs').readFileSync(s);\n};\n",
    shown: "require('fs')",
    at: "'fs'",
  },
  {
    what: 'require in one function while another shadows it',
    file: 's3.js',
    source:
      "exports.a = () => {\n  const require = (n) => n;\n  return require('own');\n};\nexports.handler = () => require('other');\n",
    shown: "require('other')",
    at: "'other'",
  },
  {
    what: 'require with a computed name inside try, in a script',
    file: 's4.js',
    source:
      'module.exports = (n) => {\n  try { return require(n); } catch (e) { return null; }\n};\n',
    shown: 'require(…)',
    at: 'require(n)',
  },
  {
    what: 'require spelt with a unicode escape',
    file: 's5.js',
    source: "module.exports = () => requ\\u0069re('x');\n",
    shown: "require('x')",
    at: "'x'",
  },
  {
    what: 'require.resolve in a script',
    file: 's6.js',
    source: "module.exports = () => require.resolve('q');\n",
    shown: "require.resolve('q')",
    at: "'q'",
  },
  {
    what: 'import() in a script',
    file: 's7.js',
    source: "'use strict';\nexports.handler = () => import('x');\n",
    shown: "import('x')",
    at: "'x'",
  },
  {
    what: 'several requires in a script: the first, and how many more',
    file: 's8.js',
    source: "const a = require('a');\nconst b = require('b');\nmodule.exports = () => a + b;\n",
    shown: "require('a')",
    at: "'a'",
    more: 1,
  },
];

/**
 * What compileFunction says of a refused import (without FUNCTIONS_DIR, so no package is
 * installed): by what the import names (bundle.ts's rules, compile-errors.ts's words).
 */
function refusalMessage(row: Refusal): string {
  const position = where(row.source, row.at);
  const at = `(line ${position.line}, column ${position.column})`;
  const more = row.more ? `, and ${row.more} more` : '';
  const shown = `\`${row.shown}\` ${at}`;
  if (row.shown === 'require(…)' || row.shown === 'import(…)') {
    const what = row.shown === 'require(…)' ? 'require' : 'import()';
    return `${row.file}: ${what} with a computed name is not available in functions: ${shown}; name the package in a string`;
  }
  if (row.shown.startsWith('require.resolve')) {
    return `${row.file}: require.resolve is not available in functions: ${shown}`;
  }
  const spec = row.at.slice(1, -1);
  if (spec.startsWith('node:') || isBuiltin(spec)) {
    const builtin = spec.replace(/^node:/, '');
    return (
      `${row.file}: node:${builtin} is not available in functions: ${shown}; ` +
      `import chain: ${row.file} → node:${builtin}; stand-ins exist only for ${STAND_IN_NAMES}`
    );
  }
  if (spec.startsWith('.') || spec.startsWith('/')) {
    return (
      `${row.file}: imports of other files are not available in a single-file function: ${shown}${more}; ` +
      'make the function a package folder (a folder with a package.json, docs/packages.md) to split it into files'
    );
  }
  const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  return `${row.file}: package '${pkg}' is not installed: ${shown}${more}; no FUNCTIONS_DIR/node_modules to import it from`;
}

for (const row of [...IMPORTS, ...SCRIPT_REQUIRES]) {
  void test(`compileFunction: ${row.what} → refused, saying why, with its position`, async () => {
    const err = await compileError(row.source, row.file);
    const position = where(row.source, row.at);
    assert.equal(err.message, refusalMessage(row));
    assert.equal(err.line, position.line);
    assert.equal(err.column, position.column);
  });
}

const UNAVAILABLE: (Omit<Refusal, 'shown'> & { message: RegExp })[] = [
  {
    what: 'top-level await in an ES module',
    file: 'u1.js',
    source: 'const r = 1;\nexport const x = await Promise.resolve(r);\nexport default () => x;\n',
    at: 'await',
    message:
      /^u1\.js: top-level await is not available in functions \(a function file runs as a script\)/,
  },
  {
    what: 'top-level for await in TypeScript',
    file: 'u2.ts',
    source: 'const xs: number[] = [];\nfor await (const x of xs) {}\nexport default () => 1;\n',
    at: 'await',
    message: /^u2\.ts: top-level await is not available/,
  },
  {
    what: 'top-level await in a .js file without exports',
    file: 'u3.js',
    source: '// seed\nconst v = await 1;\n(event) => v;\n',
    at: 'await',
    message: /^u3\.js: top-level await is not available/,
  },
  {
    what: 'import.meta',
    file: 'u4.js',
    source: 'export default () => {\n  return import.meta.url;\n};\n',
    at: 'import.meta',
    message: /^u4\.js: import\.meta is not available in functions/,
  },
  {
    what: 'export beside module.exports',
    file: 'u5.js',
    source: 'export const config = {};\nmodule.exports = () => 1;\n',
    at: 'module.exports',
    message:
      /^u5\.js: a file uses ES module syntax \(export\) or CommonJS \(module\.exports, exports\), not both/,
  },
  {
    what: 'export beside exports.handler, in TypeScript',
    file: 'u6.ts',
    source: 'export const config = { timeoutMs: 10 };\nexports.handler = () => 1;\n',
    at: 'exports.handler',
    message: /not both/,
  },
];

for (const row of UNAVAILABLE) {
  void test(`compileFunction: ${row.what} → a compile error that says so, with its position`, async () => {
    const err = await compileError(row.source, row.file);
    const position = where(row.source, row.at);
    assert.match(err.message, row.message);
    assert.ok(
      err.message.endsWith(`(line ${position.line}, column ${position.column})`),
      err.message,
    );
    assert.equal(err.line, position.line);
    assert.equal(err.column, position.column);
  });
}

interface Broken {
  what: string;
  file: string;
  source: string;
  at: string;
  /** The message after `file: SyntaxError: `, without the position. */
  message: string;
}

const SYNTAX: Broken[] = [
  {
    what: 'an ES module with a mistake on line 7 (esbuild read further than V8)',
    file: 'esm7.js',
    source:
      'export const config = { timeoutMs: 100 };\n\nexport default (event) => {\n' +
      '  const a = 1;\n  const b = 2;\n  // line 6\n  return a +;\n};\n',
    at: ';\n};',
    message: 'Unexpected ";"',
  },
  {
    what: 'a plain .js file: what V8 says',
    file: 'plain.js',
    source: '(event) => {\n  const x = 1;\n  return x +;\n};\n',
    at: ';\n};',
    message: "Unexpected token ';'",
  },
  {
    what: 'a .js file whose mistake comes before its first export: what V8 says',
    file: 'early.js',
    source: 'const a = {;\nexport default () => a;\n',
    at: ';',
    message: "Unexpected token ';'",
  },
  {
    what: 'a .js ES module with an unterminated string',
    file: 'str.js',
    source: "export default () => {\n  return 'abc;\n};\n",
    // esbuild points at the end of the line, where the string should have ended.
    at: '\n};',
    message: 'Unterminated string literal',
  },
  {
    what: 'a .js ES module using with (strict mode)',
    file: 'with.js',
    source: 'export default (e) => {\n  with (e) { return x; }\n};\n',
    at: 'with',
    message: 'With statements cannot be used in an ECMAScript module',
  },
  {
    what: 'a TypeScript file',
    file: 'a/broken.ts',
    source: 'interface E { x: number }\n\nexport default (e: E) => {\n  return e.x +;\n};\n',
    at: ';\n};',
    message: 'Unexpected ";"',
  },
  {
    what: 'a TypeScript file with non-ASCII text before the mistake (UTF-16 columns)',
    file: 'utf.ts',
    source: "const s: string = 'é😀é'; const t = 1 +;\nexport default () => s + t;\n",
    at: ';\nexport',
    message: 'Unexpected ";"',
  },
  {
    what: 'a TypeScript file cut short',
    file: 'short.ts',
    source: 'export default (e: any) => {\n  return {\n    a: 1,\n',
    at: '',
    message: 'Expected identifier but found end of file',
  },
];

for (const row of SYNTAX) {
  void test(`compileFunction: syntax error in ${row.what} → its line and column`, async () => {
    const err = await compileError(row.source, row.file);
    // '' stands for the end of the file.
    const expected =
      row.at === '' ? where(`${row.source}\u0000`, '\u0000') : where(row.source, row.at);
    assert.equal(
      err.message,
      `${row.file}: SyntaxError: ${row.message} (line ${expected.line}, column ${expected.column})`,
    );
    assert.equal(err.line, expected.line);
    assert.equal(err.column, expected.column);
  });
}

const LATE: { what: string; file: string; source: string; at: string; message: RegExp }[] = [
  {
    what: 'a quantifier out of order',
    file: 'r1.ts',
    source: 'type T = 1;\nexport default () => /a{2,1}/.test("x");\n',
    at: '/a{2,1}/',
    message: /numbers out of order/,
  },
  {
    what: 'a duplicate capture group name',
    file: 'r2.js',
    source: 'export default () => {\n  return /(?<a>x)|(?<a>y)/;\n};\n',
    at: '/(?<a>',
    message: /Duplicate capture group name/,
  },
  {
    what: 'a regular expression modifier this Node lacks',
    file: 'r3.ts',
    source: 'const x: number = 1;\nexport default () => { return /(?i:a)b/.test(String(x)); };\n',
    at: '/(?i:',
    message: /Invalid group/,
  },
];

for (const row of LATE) {
  void test(`compileFunction: what esbuild passes but V8 rejects (${row.what}) → V8's error at the user's position`, async () => {
    const err = await compileError(row.source, row.file);
    const position = where(row.source, row.at);
    assert.match(
      err.message,
      new RegExp(`^${row.file.replace('.', '\\.')}: SyntaxError: Invalid regular expression`),
    );
    assert.match(err.message, row.message);
    assert.ok(
      err.message.endsWith(`(line ${position.line}, column ${position.column})`),
      err.message,
    );
    assert.deepEqual({ line: err.line, column: err.column }, position);
  });
}

void test('compileFunction: a plain .js syntax error reads exactly as checkSyntax (V8) says', async () => {
  const sources = [
    '(event) => {\n  return x +;\n};\n',
    '(event => {',
    'module.exports = (e) => { let let = 1; };\n',
  ];
  for (const source of sources) {
    const err = await compileError(source, 'same.js');
    const expected = checkSyntax(source, 'same');
    assert.ok(expected);
    assert.equal(err.message, expected.message);
    assert.equal(err.line, expected.line);
    assert.equal(err.column, expected.column);
  }
});

interface Thrower {
  what: string;
  file: string;
  source: string;
  /** Where V8 puts the throwing frame: `new` of `new Error`, the property read, the callee. */
  at: string;
  name: string;
}

const THROWERS: Thrower[] = [
  {
    what: 'TypeScript: types, an interface and an enum before the throwing line',
    file: 'a/t1.ts',
    source:
      'interface In {\n  x: number;\n  tags?: Array<string>;\n}\n' +
      'type Out = { ok: boolean };\nenum Level { Low = 1, High }\n\n' +
      'export const handler = (event: In): Out => {\n' +
      "  const s: string = 'héllo 😀'; const q: Record<string, number> = { a: Level.High };\n" +
      "  throw new Error('boom ' + s + q.a);\n};\n",
    at: 'new Error',
    name: 'Error',
  },
  {
    what: 'TypeScript seed form: a property read on undefined',
    file: 't2.ts',
    source:
      'const x: number = 1;\n(e: any): number => { const y: Array<string> = []; return y[0].length; };\n',
    at: 'length',
    name: 'TypeError',
  },
  {
    what: 'TypeScript: calling a non-function after casts (the segment starts at the indentation)',
    file: 't3.ts',
    source:
      'enum E { A = 1 }\nexport default (e: any) => {\n  const v = <any>E.A as number;\n' +
      '  const w: number = 1;\n  v(w as any, 2 as unknown as string);\n};\n',
    at: 'v(w',
    name: 'TypeError',
  },
  {
    what: 'ES module .js: a throw in a nested function',
    file: 'j1.js',
    source:
      'export const config = { timeoutMs: 10 };\n\nfunction inner(n) {\n  if (n > 0) {\n' +
      '    throw new RangeError(`n=${n}`);\n  }\n}\nexport default (e) => inner(e.x);\n',
    at: 'new RangeError',
    name: 'RangeError',
  },
  {
    what: 'TypeScript: an async handler that rejects after an await',
    file: 't4.ts',
    source:
      'type Ev = { x: number };\nexport default async (e: Ev): Promise<never> => {\n' +
      '  await Promise.resolve();\n  const o: { f?: () => void } = {};\n  return o.f!() as never;\n};\n',
    at: 'o.f!()',
    name: 'TypeError',
  },
];

for (const row of THROWERS) {
  void test(`remapStack: ${row.what} → the frame's line and column in the user's file`, async () => {
    const compiled = await compileFunction(row.source, row.file);
    const loaded = loadInSandbox(compiled);
    let stack = '';
    try {
      await handlerOf(loaded)({ x: 1 });
      assert.fail('the handler did not throw');
    } catch (err) {
      assert.equal((err as Error).name, row.name);
      stack = String((err as Error).stack);
    }
    const frame = new RegExp(`\\(${row.file.replace(/[./]/g, '\\$&')}:(\\d+):(\\d+)\\)`);
    const before = frame.exec(stack);
    assert.ok(before, stack);
    const remapped = remapStack(compiled, stack);
    const after = frame.exec(remapped);
    assert.ok(after, remapped);
    const expected = where(row.source, row.at);
    // V8 points at the callee of a call through a property: `o.f!()` → `f`.
    if (row.at === 'o.f!()') expected.column += 2;
    assert.deepEqual({ line: Number(after[1]), column: Number(after[2]) }, expected, remapped);
    assert.deepEqual(originalPosition(compiled, Number(before[1]), Number(before[2])), expected);
  });
}

/** The first frame of `file` in an error's stack, as "line:column", and the error's message. */
function firstFrame(fn: CompiledFunction, event: unknown, remap: boolean): string {
  try {
    handlerOf(loadInSandbox(fn))(event);
  } catch (err) {
    const stack = remap
      ? remapStack(fn, String((err as Error).stack))
      : String((err as Error).stack);
    const frame = new RegExp(`\\(${fn.filename.replace(/[./]/g, '\\$&')}:(\\d+:\\d+)\\)`).exec(
      stack,
    );
    assert.ok(frame, stack);
    return `${frame[1]} ${(err as Error).message}`;
  }
  assert.fail('the handler did not throw');
}

// Each throws on line 2, which esbuild reformats (quotes, spacing, one statement per line); V8's
// own position for the untouched text is the reference.
const THROWING_LINES = [
  'null.x',
  'e.nope.deep',
  'e.s.nope()',
  "'x' in 5",
  'new e.x()',
  'e.s`tpl`',
  '[...e.x]',
  'const {a:{b}} = e',
  'e?.s.q.r',
  "Symbol() + ''",
  "JSON.parse('{')",
  'e.x.toFixed(200)',
  '(function named(){ return undefinedVar })()',
  'e.s.repeat(-1)',
  'let q = 1;   q = q + zz;',
  "x => 1; throw   new   Error('spaced')",
];

for (const body of THROWING_LINES) {
  void test(`remapStack: \`${body}\` in .ts and ES module files → the position V8 gives for the untouched text`, async () => {
    const line2 = `    if (e.x) {   ${body}   }\n  };\n`;
    const event = { x: 1, s: 'a' };
    const untouched = await compileFunction(`module.exports = (e) => {\n${line2}`, 'ref.js');
    assert.equal(untouched.sourceMap, undefined);
    const expected = firstFrame(untouched, event, false);
    const variants = [
      { file: 'v/seed.ts', source: `(e) => {\n${line2}` },
      { file: 'v/esm.js', source: `export default (e) => {\n${line2}` },
      {
        file: 'v/esm.ts',
        source: `export const handler = (e: { x: number; s: string }): void => {\n${line2}`,
      },
    ];
    for (const variant of variants) {
      const compiled = await compileFunction(variant.source, variant.file);
      assert.ok(compiled.sourceMap);
      assert.equal(firstFrame(compiled, event, true), expected, variant.file);
    }
  });
}

void test('remapStack: an error thrown while the file loads maps to its line', async () => {
  const source =
    'type T = { n: number };\nconst t: T = { n: 1 };\n\n' +
    "if (t.n === 1) throw new TypeError('bad config');\nexport default () => t;\n";
  const compiled = await compileFunction(source, 'load.ts');
  try {
    loadInSandbox(compiled);
    assert.fail('loading did not throw');
  } catch (err) {
    const remapped = remapStack(compiled, String((err as Error).stack));
    const { line, column } = where(source, 'new TypeError');
    assert.match(remapped, new RegExp(`load\\.ts:${line}:${column}\\b`), remapped);
  }
});

void test("remapStack: rewrites only this file's positions, with or without a column", async () => {
  const source = 'type A = number;\ntype B = string;\nexport default (a: A, b: B) => a + b;\n';
  const compiled = await compileFunction(source, 'x/y.ts');
  const code = compiled.code.split('\n');
  const line = code.findIndex((text) => text.includes('(a, b) =>')) + 1;
  const column = code[line - 1].indexOf('a + b') + 1;
  const text = [
    'Error: e',
    `    at f (x/y.ts:${line}:${column})`,
    `    at x/y.ts:${line}:${column}`,
    `x/y.ts:${line}`,
    `    at g (faas-envelope.js:${line}:${column})`,
    `    at h (zx/y.ts:${line}:${column})`,
  ].join('\n');
  const { line: l, column: c } = where(source, 'a + b');
  assert.equal(
    remapStack(compiled, text),
    [
      'Error: e',
      `    at f (x/y.ts:${l}:${c})`,
      `    at x/y.ts:${l}:${c}`,
      `x/y.ts:${l}`,
      `    at g (faas-envelope.js:${line}:${column})`,
      `    at h (zx/y.ts:${line}:${column})`,
    ].join('\n'),
  );
});

void test("originalPosition: esbuild's helpers above the file's code map to line 1, column 1", async () => {
  const compiled = await compileFunction('export default () => 1;\n', 'helpers.js');
  const lines = compiled.code.split('\n');
  const helper = lines.findIndex((text) => text.includes('__toCommonJS =')) + 1;
  assert.ok(helper > 0, compiled.code);
  assert.deepEqual(originalPosition(compiled, helper, 5), { line: 1, column: 1 });
});

void test('compileFunction: many files at once each get their own code', async () => {
  const files = Array.from({ length: 24 }, (_, i) => ({
    file: `c${i}.${i % 2 ? 'ts' : 'js'}`,
    source: `export default (e${i % 2 ? ': { x: number }' : ''}) => e.x + ${i};\n`,
  }));
  const compiled = await Promise.all(files.map((f) => compileFunction(f.source, f.file)));
  for (let i = 0; i < files.length; i++) {
    assert.equal(compiled[i].filename, files[i].file);
    assert.equal(handlerOf(loadInSandbox(compiled[i]))({ x: 100 }), 100 + i);
  }
});

/** The esbuild service processes this test process started (Linux /proc). */
function esbuildChildren(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && stat.includes('(esbuild)')) pids.push(Number(entry));
    } catch {
      // The process ended meanwhile.
    }
  }
  return pids;
}

void test(
  'compileFunction: a killed esbuild service is replaced on the next compile',
  { skip: !fs.existsSync('/proc/self/stat') },
  async () => {
    await compileFunction('export default () => 1;\n', 'before.ts');
    const children = esbuildChildren();
    assert.equal(children.length, 1, 'one esbuild service');
    process.kill(children[0], 'SIGKILL');
    // Wait until it is gone (bounded): the next compile must not meet a half-dead service.
    for (let i = 0; i < 100 && esbuildChildren().includes(children[0]); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const compiled = await compileFunction(
      'export default (e: { x: number }) => e.x * 3;\n',
      'after.ts',
    );
    assert.equal(handlerOf(loadInSandbox(compiled))({ x: 3 }), 9);
    assert.notDeepEqual(esbuildChildren(), children);
  },
);
