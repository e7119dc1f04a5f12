/* ESLint 8 legacy config (the live one): typescript-eslint 8 rules, type-aware. */
const fs = require('node:fs');
const path = require('node:path');

/**
 * What a sandbox file declares at its top level, as ESLint globals: `let` is 'writable'; `const`,
 * `function` and `class` are 'readonly'. Read from the start of each line: Prettier puts every
 * top-level declaration there, and nothing else.
 */
function topLevelDeclarations(file) {
  const text = fs.readFileSync(file, 'utf8');
  if (/^(?:const|let|var)\s*[{[]/m.test(text)) {
    throw new Error(
      `${file}: a top-level destructuring declaration; .eslintrc.js reads names only`,
    );
  }
  const declarations = {};
  for (const [, kind, name] of text.matchAll(
    /^(?:async\s+)?(const|let|var|function\*?|class)\s+([\w$]+)/gm,
  )) {
    declarations[name] = kind === 'let' || kind === 'var' ? 'writable' : 'readonly';
  }
  return declarations;
}

const jsFiles = (dir) =>
  fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.js'))
    .map((name) => path.join(dir, name));

/**
 * The globals script (src/worker/globals.ts) is several files joined into one function,
 * install(hostCall, hostRequest), with buildParts() nested in it: the files of
 * sandbox/globals/ share install()'s scope, those of sandbox/globals/parts/ share buildParts()'s.
 * So each file sees, as globals, the top-level names of the other files of its scope and of the
 * scope around it, as it does in the joined script (its own names are its own).
 */
function sandboxScopeOverrides() {
  const sandbox = path.join(__dirname, 'src/worker/sandbox');
  // install()'s parameters, and the function globals.ts wraps around parts/*.js.
  const installParams = { hostCall: 'readonly', hostRequest: 'readonly', buildParts: 'readonly' };
  const installFiles = jsFiles(path.join(sandbox, 'globals'));
  const partsFiles = jsFiles(path.join(sandbox, 'globals/parts'));
  const declaredIn = (files) => Object.assign({}, ...files.map(topLevelDeclarations));
  const scopes = [
    { files: installFiles, outer: installParams },
    { files: partsFiles, outer: { ...installParams, ...declaredIn(installFiles) } },
  ];
  return scopes.flatMap(({ files, outer }) =>
    files.map((file) => ({
      files: [path.relative(__dirname, file)],
      globals: { ...outer, ...declaredIn(files.filter((other) => other !== file)) },
    })),
  );
}

/** src/ folders from low to high (the import boundary below). */
const LAYERS = [
  './src/storage',
  './src/functions',
  './src/pool',
  './src/worker',
  './src/services',
  './src/invocation',
  './src/async',
  './src/http',
  './src/server.ts',
  './src/main.ts',
  './src/cli',
];
const without = (list, ...drop) => list.filter((p) => !drop.includes(p));
module.exports = {
  root: true,
  parser: '@typescript-eslint/parser',
  parserOptions: { project: './tsconfig.json', tsconfigRootDir: __dirname },
  plugins: ['@typescript-eslint', 'import'],
  settings: { 'import/resolver': { node: { extensions: ['.ts', '.tsx', '.js'] } } },
  extends: ['eslint:recommended', 'plugin:@typescript-eslint/recommended'],
  env: { node: true, es2022: true },
  ignorePatterns: ['/dist/', 'node_modules/', '/functions/', 'test/fixtures/', '.eslintrc.js'],
  rules: {
    '@typescript-eslint/no-floating-promises': [
      'error',
      {
        // node:test's test()/describe() return promises the runner itself awaits.
        allowForKnownSafeCalls: [
          { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] },
        ],
      },
    ],
    '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
    '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    '@typescript-eslint/consistent-type-imports': 'error',
    eqeqeq: ['error', 'smart'],
    'no-console': 'error',
    // The layers of src/ (docs/architecture.md), low to high: errors, observe/logger and
    // config; storage; functions, pool, worker; services, observe; invocation; async; http;
    // server and main; cli (a client of the server, over HTTP). A folder never imports from a higher one, and nothing imports in a circle.
    'import/no-cycle': 'error',
    'import/no-restricted-paths': [
      'error',
      {
        zones: [
          { target: './src/errors.ts', from: [...LAYERS, './src/config.ts', './src/observe'] },
          // config reads EGRESS_ALLOW with the egress policy's own parser.
          { target: './src/config.ts', from: without(LAYERS, './src/services') },
          { target: './src/storage', from: LAYERS.slice(1) },
          { target: './src/functions', from: without(LAYERS.slice(2), './src/functions') },
          { target: './src/pool', from: without(LAYERS.slice(2), './src/pool', './src/worker') },
          {
            target: './src/worker',
            from: [...LAYERS, './src/config.ts', './src/observe'].filter(
              (p) => p !== './src/worker' && p !== './src/pool',
            ),
          },
          { target: './src/services', from: LAYERS.slice(5) },
          { target: './src/observe', from: LAYERS.slice(5) },
          { target: './src/invocation', from: LAYERS.slice(6) },
          { target: './src/async', from: LAYERS.slice(7) },
          { target: './src/http', from: LAYERS.slice(8) },
          { target: ['./src/!(cli)/**', './src/*.ts'], from: './src/cli' },
          // The CLI talks to the server over HTTP only: of the server's code it reads the
          // answer types (import type), and it bundles a package with the server's own bundler
          // (docs/spec.md §2 "Packages": one module, the same rules and errors).
          {
            target: './src/cli',
            from: './src',
            except: [
              './cli',
              './http/admin/api.ts',
              './functions/bundle.ts',
              './functions/transform.ts',
              './errors.ts',
            ],
          },
        ],
      },
    ],
  },
  overrides: [
    {
      files: ['bench/**/*.ts'],
      rules: { 'no-console': 'off' },
    },
    {
      // The web console: browser code, type-checked against its own tsconfig (DOM, Preact JSX).
      files: ['ui/src/**/*.ts', 'ui/src/**/*.tsx'],
      parserOptions: { project: './ui/tsconfig.json', tsconfigRootDir: __dirname },
      env: { browser: true, node: false },
    },
    {
      // Sandbox code: plain JavaScript that runs inside vm2, in strict mode, not in Node. Its
      // world is the language's built-ins (the context's own) plus what the files declare.
      files: ['src/worker/sandbox/**/*.js'],
      parser: 'espree',
      parserOptions: {
        project: null,
        ecmaVersion: 2022,
        sourceType: 'script',
        ecmaFeatures: { impliedStrict: true },
      },
      env: { node: false, es2022: true },
      rules: {
        // Type-aware rules: there are no types (nor imports) here.
        '@typescript-eslint/consistent-type-imports': 'off',
        '@typescript-eslint/no-floating-promises': 'off',
        '@typescript-eslint/no-misused-promises': 'off',
        // A file's top-level names are used by the other files of its scope (see above).
        '@typescript-eslint/no-unused-vars': [
          'error',
          { vars: 'local', argsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
        ],
      },
    },
    {
      // envelope.js and request.js are each one function expression: the script's completion
      // value, which the runner calls.
      files: ['src/worker/sandbox/*.js'],
      rules: { '@typescript-eslint/no-unused-expressions': 'off' },
    },
    ...sandboxScopeOverrides(),
  ],
};
