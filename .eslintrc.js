/* ESLint 8 legacy config (the live one): typescript-eslint 8 rules, type-aware. */
module.exports = {
  root: true,
  parser: '@typescript-eslint/parser',
  parserOptions: { project: './tsconfig.json', tsconfigRootDir: __dirname },
  plugins: ['@typescript-eslint'],
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
