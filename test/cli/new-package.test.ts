/**
 * `koa-faas new <name> --template package`, a real CLI process: the folder it writes
 * (package.json with `ms`, index.ts, event.json), the next steps, that it never writes over what
 * is there; and, on a real server, that the starter deploys and answers its test input once its
 * dependency is installed (the repository's own `ms` copied in, as `npm install` would put it).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CLI, runCli } from '../support/cli';
import type { CliRun } from '../support/cli';
import { startServer } from '../support/server';

let cwd: string;

const ROOT = path.join(__dirname, '..', '..', '..');
const TOKEN = 'new-package-token-0123456789abcdef';

const envOf = (env: NodeJS.ProcessEnv = {}) => ({
  PATH: process.env.PATH,
  HOME: cwd,
  XDG_CONFIG_HOME: path.join(cwd, 'config'),
  ...env,
});

/** Runs the CLI and waits (blocking: only where no server runs in this process). */
function cli(args: string[]) {
  const run = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env: envOf(),
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Runs the CLI without blocking this process (which may be serving it). */
function cliAsync(
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<CliRun> {
  return runCli(args, { cwd: options.cwd, env: envOf(options.env) });
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

test('the starter, its dependency installed, deploys and answers its test input', async () => {
  assert.equal(cli(['new', 'how-long', '--template', 'package']).code, 0);
  const folder = path.join(cwd, 'functions', 'how-long');
  fs.cpSync(path.join(ROOT, 'node_modules', 'ms'), path.join(folder, 'node_modules', 'ms'), {
    recursive: true,
  });
  const t = await startServer({ env: { ADMIN_TOKEN: TOKEN } });
  try {
    const env = { KOA_FAAS_URL: t.url, KOA_FAAS_TOKEN: TOKEN };
    // The next steps it printed, from the folder.
    const deployed = await cliAsync(['deploy', '.', '--name', 'how-long'], { cwd: folder, env });
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.match(deployed.stdout, /deployed\s+how-long/);
    const invoked = await cliAsync(['invoke', 'how-long', '--data', '@event.json'], {
      cwd: folder,
      env,
    });
    assert.equal(invoked.code, 0, invoked.stderr);
    assert.deepEqual(JSON.parse(invoked.stdout), {
      duration: '2 days',
      ms: 172_800_000,
      long: '2 days',
    });
    const refused = await cliAsync(['invoke', 'how-long', '--data', '{"duration":"soon"}'], {
      cwd,
      env,
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /send a duration/);
  } finally {
    await t.close();
  }
});
