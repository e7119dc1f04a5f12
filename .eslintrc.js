/* ESLint 8 legacy config (the live one): typescript-eslint 8 rules, type-aware. */

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
    // server and main. A folder never imports from a higher one, and nothing imports in a circle.
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
  ],
};
