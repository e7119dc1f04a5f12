/**
 * `koa-faas new <name> --template package`, a real CLI process (no server needed): the folder it
 * writes (package.json with `ms`, index.ts, event.json), the next steps, and that it never
 * writes over what is there.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');

let cwd: string;

function cli(args: string[]) {
  const run = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env: { PATH: process.env.PATH, HOME: cwd, XDG_CONFIG_HOME: path.join(cwd, 'config') },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

before(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-new-'));
});
after(() => fs.rmSync(cwd, { recursive: true, force: true }));

test('writes functions/<name>/ with package.json, index.ts and event.json', () => {
  const run = cli(['new', 'durations', '--template', 'package']);
  assert.equal(run.code, 0, run.stderr);
  const folder = path.join(cwd, 'functions', 'durations');
  assert.deepEqual(fs.readdirSync(folder).sort(), ['event.json', 'index.ts', 'package.json']);
  assert.equal(
    run.stdout,
    ['package.json', 'index.ts', 'event.json']
      .map((file) => `wrote functions/durations/${file}\n`)
      .join(''),
  );

  const manifest = JSON.parse(fs.readFileSync(path.join(folder, 'package.json'), 'utf8')) as {
    name: string;
    private: boolean;
    main: string;
    dependencies: Record<string, string>;
  };
  assert.equal(manifest.name, 'durations');
  assert.equal(manifest.private, true);
  assert.equal(manifest.main, 'index.ts');
  assert.match(manifest.dependencies.ms, /^\^2\./);
  // The entry `main` names is there, and uses the dependency.
  const entry = fs.readFileSync(path.join(folder, manifest.main), 'utf8');
  assert.match(entry, /^import ms from 'ms';$/m);
  assert.match(entry, /^export default /m);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(folder, 'event.json'), 'utf8')), {
    duration: '2 days',
  });

  // The next steps, on stderr: install in the folder, then invoke with the test input.
  assert.match(run.stderr, /cd functions\/durations && npm install\n/);
  assert.match(run.stderr, /koa-faas invoke durations --data @event\.json\n/);
  // No install: the CLI never runs npm.
  assert.equal(fs.existsSync(path.join(folder, 'node_modules')), false);
});

test('--json: one document naming the files; a nested name gets an npm-valid name', () => {
  const run = cli(['new', 'tools/Parse', '--template', 'package', '--dir', 'fns', '--json']);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    name: 'tools/Parse',
    dir: 'fns/tools/Parse',
    files: [
      'fns/tools/Parse/package.json',
      'fns/tools/Parse/index.ts',
      'fns/tools/Parse/event.json',
    ],
    template: 'package',
  });
  const manifest = JSON.parse(
    fs.readFileSync(path.join(cwd, 'fns', 'tools', 'Parse', 'package.json'), 'utf8'),
  ) as { name: string };
  assert.equal(manifest.name, 'tools-parse');
});

test('never over an existing folder or a one-file function of the name: exit 1', () => {
  const folder = path.join(cwd, 'functions', 'taken');
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(path.join(folder, 'index.js'), '// mine\n');
  const refused = cli(['new', 'taken', '--template', 'package']);
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, 'koa-faas: functions/taken exists: not overwritten\n');
  assert.deepEqual(fs.readdirSync(folder), ['index.js']);
  assert.equal(fs.readFileSync(path.join(folder, 'index.js'), 'utf8'), '// mine\n');

  // An empty folder too: nothing is written into a folder that is there.
  fs.mkdirSync(path.join(cwd, 'functions', 'empty'));
  assert.equal(cli(['new', 'empty', '--template', 'package']).code, 1);
  assert.deepEqual(fs.readdirSync(path.join(cwd, 'functions', 'empty')), []);

  fs.writeFileSync(path.join(cwd, 'functions', 'single.js'), 'module.exports = () => 1;\n');
  const single = cli(['new', 'single', '--template', 'package']);
  assert.equal(single.code, 1);
  assert.match(single.stderr, /^koa-faas: functions\/single\.js exists: 'single' is taken\n$/);
  assert.equal(fs.existsSync(path.join(cwd, 'functions', 'single')), false);

  // And the other way: a one-file template where a package of the name is.
  fs.mkdirSync(path.join(cwd, 'functions', 'pkg'));
  fs.writeFileSync(path.join(cwd, 'functions', 'pkg', 'package.json'), '{}\n');
  const file = cli(['new', 'pkg', '--template', 'ts']);
  assert.equal(file.code, 1);
  assert.match(file.stderr, /^koa-faas: functions\/pkg\/package\.json exists: 'pkg' is taken\n$/);
  assert.equal(fs.existsSync(path.join(cwd, 'functions', 'pkg.ts')), false);
});
