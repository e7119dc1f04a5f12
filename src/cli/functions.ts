/**
 * The function commands: `new`, `deploy`, `invoke`, `list`, `describe`, `delete` and `logs`.
 * `new` writes files locally; the others call the server: the admin API under /_/
 * (docs/http-api.md) or, for `invoke`, the function's own URL; `logs --follow` its event
 * stream (follow.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { FunctionCompileError } from '../errors';
import { bundlePackage } from '../functions/bundle';
import { fromBundle, stopCompiler } from '../functions/transform';
import type {
  DeployAnswer,
  FunctionDetail,
  FunctionListAnswer,
  InvocationListAnswer,
  InvocationRecord,
} from '../http/admin/api';
import { admin, CliError, errorLine, namePath, send } from './client';
import { follow } from './follow';
import { columns, jsonLine, note, result } from './output';
import { resolveSettings } from './settings';
import type { GlobalOptions, Settings } from './settings';
import { extensionOf, packageFiles, TEMPLATES, templateSource } from './templates';
import type { Template } from './templates';

/**
 * Bundles a package folder for an upload, with the server's own rules (functions/bundle.ts): the
 * JSON body of the deploy (docs/http-api.md: `{source, sourceMap, bundle, package}`) and what to
 * print.
 * @throws CliError with the compile error (the import chain of a refused built-in, a missing
 *   package), as the server would say it.
 */
async function bundleForUpload(
  dir: string,
  name: string,
): Promise<{ body: Record<string, unknown>; bytes: number; modules: number; packages: string }> {
  if (!fs.existsSync(path.join(dir, 'package.json'))) {
    throw new CliError(
      `${dir}: a folder to deploy needs a package.json (koa-faas new <name> --template package)`,
    );
  }
  let bundle: Awaited<ReturnType<typeof bundlePackage>>;
  try {
    bundle = await bundlePackage(dir, {
      name,
      installHint: (pkg) => `add '${pkg}' to package.json and run \`npm install\` in ${dir}`,
    });
  } catch (err) {
    if (err instanceof FunctionCompileError)
      throw new CliError(`FUNCTION_COMPILE_ERROR: ${err.message}`);
    throw err;
  } finally {
    await stopCompiler();
  }
  const compiled = fromBundle(bundle, `${name}.js`);
  return {
    body: {
      source: compiled.code,
      sourceMap: compiled.sourceMap,
      bundle: bundle.info,
      package: bundle.package,
    },
    bytes: bundle.info.bytes,
    modules: bundle.info.modules,
    packages: Object.entries(bundle.info.packages)
      .map(([pkg, version]) => `${pkg}@${version}`)
      .join(', '),
  };
}

/** How long `invoke` waits for the function's answer (the server's own timeouts are shorter). */
const INVOKE_TIMEOUT_MS = 120_000;

const settingsOf = (command: Command) => resolveSettings(command.optsWithGlobals<GlobalOptions>());

/** A function name as the server takes it: path segments of letters, digits, `_` and `-`. */
function functionName(value: string): string {
  const name = value.replace(/^\/+/, '');
  if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(name)) {
    throw new InvalidArgumentError('use letters, digits, _ and -, with / between folders');
  }
  return name;
}

/** `10m` → milliseconds (s, m, h, d). */
function duration(value: string): number {
  const match = /^(\d+)(s|m|h|d)$/.exec(value);
  if (!match) throw new InvalidArgumentError('use a number and a unit: 30s, 10m, 2h, 1d');
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's'];
  return Number(match[1]) * unit;
}

function positiveInteger(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError('a positive whole number');
  }
  return Number(value);
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function functionCommands(program: Command): void {
  program
    .command('new')
    .description('write a starter function: a file, or with --template package a folder')
    .argument('<name>', 'the function name (its URL path)', functionName)
    .addOption(new Option('--template <template>', 'the starter').choices(TEMPLATES).default('js'))
    .option('--dir <dir>', 'the functions folder', 'functions')
    .action((name: string, options: { template: Template; dir: string }, command: Command) => {
      const { json } = command.optsWithGlobals<GlobalOptions>();
      if (options.template === 'package') {
        writePackage(name, options.dir, json === true);
        return;
      }
      const file = path.join(options.dir, `${name}.${extensionOf(options.template)}`);
      const other = path.join(options.dir, `${name}.${options.template === 'ts' ? 'js' : 'ts'}`);
      if (fs.existsSync(other)) throw new CliError(`${other} exists: '${name}' is taken`);
      const folder = path.join(options.dir, name, 'package.json');
      if (fs.existsSync(folder)) throw new CliError(`${folder} exists: '${name}' is taken`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      try {
        // 'wx': never overwrite a file that is there.
        fs.writeFileSync(file, templateSource(options.template, name), { flag: 'wx' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new CliError(`${file} exists: not overwritten`);
        }
        throw err;
      }
      result(json === true, { name, file, template: options.template }, () => `wrote ${file}`);
    });

  program
    .command('deploy')
    .description(
      'deploy one .js or .ts file, or a package folder bundled here with its node_modules ' +
        '(PUT /_/functions/<name>)',
    )
    .argument('<file|dir>', 'the function file, or a folder with a package.json')
    .option('--name <name>', 'the function name (default: the file or folder name)', functionName)
    .action(async (file: string, options: { name?: string }, command: Command) => {
      const settings = settingsOf(command);
      if (fs.statSync(file, { throwIfNoEntry: false })?.isDirectory()) {
        const name = options.name ?? functionName(path.basename(path.resolve(file)));
        const upload = await bundleForUpload(file, name);
        const answer = await admin<DeployAnswer>(settings, `/_/functions/${namePath(name)}`, {
          method: 'PUT',
          body: gzipSync(JSON.stringify(upload.body)),
          headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        });
        result(settings.json, answer, () =>
          columns([
            ['deployed', answer.name],
            ['version', answer.version],
            ['bundle', `${upload.bytes} bytes, ${upload.modules} modules`],
            ['packages', upload.packages || '(none)'],
          ]),
        );
        return;
      }
      const extension = path.extname(file);
      if (extension !== '.js' && extension !== '.ts') {
        throw new CliError(`${file}: deploy takes one .js or .ts file, or a package folder`);
      }
      let source: Buffer;
      try {
        source = fs.readFileSync(file);
      } catch (err) {
        throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
      }
      const name = options.name ?? functionName(path.basename(file, extension));
      const answer = await admin<DeployAnswer>(settings, `/_/functions/${namePath(name)}`, {
        method: 'PUT',
        body: source,
        headers: {
          'content-type': extension === '.ts' ? 'application/typescript' : 'application/javascript',
        },
      });
      result(settings.json, answer, () =>
        columns([
          ['deployed', answer.name],
          ['version', answer.version],
          ['bytes', String(answer.bytes)],
        ]),
      );
    });

  program
    .command('invoke')
    .description('call a function; its response body goes to stdout, the status to stderr')
    .argument('<name>', 'the function name', functionName)
    .option('--data <data>', 'the request body: JSON text, or @file')
    .option('--method <method>', 'the HTTP method (default: POST with --data, else GET)')
    .option('--header <header>', "a request header, 'Name: value' (repeatable)", collect, [])
    .option('--path <path>', 'a sub-path after the name, e.g. /items/1')
    .option('--async', 'invoke asynchronously (Prefer: respond-async): prints the 202 answer')
    .action(
      async (
        name: string,
        options: {
          data?: string;
          method?: string;
          header: string[];
          path?: string;
          async?: boolean;
        },
        command: Command,
      ) => {
        const settings = settingsOf(command);
        const headers: Record<string, string> = {};
        for (const header of options.header) {
          const colon = header.indexOf(':');
          if (colon < 1) throw new CliError(`--header '${header}': use 'Name: value'`);
          headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
        }
        let body: string | Buffer | undefined;
        if (options.data !== undefined) {
          body = options.data.startsWith('@') ? readData(options.data.slice(1)) : options.data;
          headers['content-type'] ??= 'application/json';
        }
        if (options.async) headers.prefer = 'respond-async';
        const subpath = options.path === undefined ? '' : `/${options.path.replace(/^\/+/, '')}`;
        const response = await send(settings, `/${namePath(name)}${subpath}`, {
          method: (options.method ?? (body === undefined ? 'GET' : 'POST')).toUpperCase(),
          headers,
          body,
          auth: false,
          timeoutMs: INVOKE_TIMEOUT_MS,
        });
        const text = await response.text();
        const requestId = response.headers.get('x-request-id') ?? undefined;
        if (settings.json) {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON: the body as text.
          }
          result(
            true,
            {
              status: response.status,
              headers: Object.fromEntries(response.headers),
              body: parsed,
              requestId,
            },
            () => '',
          );
        } else {
          process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
          // A failure's one stderr line (below) carries its code instead.
          if (response.status < 400) note(`${response.status}${requestId ? ` ${requestId}` : ''}`);
        }
        if (response.status >= 400) throw new CliError(errorLine(response.status, text));
      },
    );

  program
    .command('list')
    .description('the deployed functions (GET /_/functions)')
    .action(async (_options: unknown, command: Command) => {
      const settings = settingsOf(command);
      const answer = await admin<FunctionListAnswer>(settings, '/_/functions');
      result(settings.json, answer, () =>
        answer.functions.length === 0
          ? []
          : columns([
              ['NAME', 'VERSION', 'STATUS', 'BYTES', 'MODIFIED'],
              ...answer.functions.map((fn) => [
                fn.name,
                fn.version,
                fn.quarantined ? 'quarantined' : fn.status,
                String(fn.bytes),
                fn.modified,
              ]),
            ]),
      );
    });

  program
    .command('describe')
    .description('one function: version, config, counts and source (GET /_/functions/<name>)')
    .argument('<name>', 'the function name', functionName)
    .action(async (name: string, _options: unknown, command: Command) => {
      const settings = settingsOf(command);
      const fn = await admin<FunctionDetail>(settings, `/_/functions/${namePath(name)}`);
      result(settings.json, fn, () => [
        ...columns([
          ['name', fn.name],
          ['file', fn.file],
          ['version', fn.version],
          ['status', fn.status + (fn.error ? `: ${fn.error}` : '')],
          ['bytes', String(fn.bytes)],
          ['modified', fn.modified],
          ['layer', fn.layer],
          ['quarantined', String(fn.quarantined)],
          ['config', JSON.stringify(fn.config)],
          ['invocations', JSON.stringify(fn.invocations)],
        ]),
        '',
        fn.source.trimEnd(),
      ]);
    });

  program
    .command('delete')
    .description('remove a function (DELETE /_/functions/<name>)')
    .argument('<name>', 'the function name', functionName)
    .action(async (name: string, _options: unknown, command: Command) => {
      const settings = settingsOf(command);
      await admin(settings, `/_/functions/${namePath(name)}`, { method: 'DELETE' });
      result(settings.json, { name, deleted: true }, () => `deleted ${name}`);
    });

  program
    .command('logs')
    .description(
      'recent invocation records, newest first (GET /_/invocations); --follow streams new ones',
    )
    .argument('[name]', 'only this function', functionName)
    .option('--since <duration>', 'only records started within it: 30s, 10m, 2h, 1d', duration)
    .option('--status <status>', 'ok, failed (any error), or an HTTP status or class: 504, 5xx')
    .option('--limit <n>', 'at most this many records', positiveInteger, 100)
    .option(
      '--follow',
      'print records as they happen (GET /_/invocations/stream) until Ctrl-C; with --since, the recent ones first',
    )
    .action(async (name: string | undefined, options: LogsOptions, command: Command) => {
      const settings = settingsOf(command);
      const keep = outcomeFilter(options.status);
      if (!options.follow) {
        const records = await recentRecords(settings, name, options);
        if (settings.json) {
          for (const record of records) jsonLine(record);
          return;
        }
        if (records.length === 0) {
          note('no invocation records');
          return;
        }
        result(false, records, () => recordLines(records));
        return;
      }
      const query = new URLSearchParams();
      if (name !== undefined) query.set('fn', name);
      if (options.status !== undefined && !isOutcome(options.status)) {
        query.set('status', options.status);
      }
      await follow(settings, {
        query,
        backlog:
          options.since === undefined ? undefined : () => recentRecords(settings, name, options),
        print: (record) => {
          if (!keep(record)) return;
          if (settings.json) jsonLine(record);
          else process.stdout.write(`${recordLines([record]).join('\n')}\n`);
        },
      });
    });
}

interface LogsOptions {
  since?: number;
  status?: string;
  limit: number;
  follow?: boolean;
}

/** `--status ok` and `--status failed` name outcomes, filtered here; the rest the server filters. */
const isOutcome = (status: string | undefined) => status === 'ok' || status === 'failed';

/** The outcome half of `--status` as a test of a record. */
function outcomeFilter(status: string | undefined): (record: InvocationRecord) => boolean {
  if (status === 'ok') return (record) => record.outcome === 'ok';
  if (status === 'failed') return (record) => record.outcome !== 'ok';
  return () => true;
}

/** The records `logs` prints: newest first, filtered by name, `--status` and `--since`. */
async function recentRecords(
  settings: Settings,
  name: string | undefined,
  options: LogsOptions,
): Promise<InvocationRecord[]> {
  const query = new URLSearchParams();
  if (name !== undefined) query.set('fn', name);
  const outcome = isOutcome(options.status);
  if (options.status !== undefined && !outcome) query.set('status', options.status);
  // Filtered here too: ask for every kept record (the server caps at RECORDS_MAX).
  const filtered = outcome || options.since !== undefined;
  query.set('limit', String(filtered ? 1_000_000 : options.limit));
  const answer = await admin<InvocationListAnswer>(settings, `/_/invocations?${query}`);
  const since = options.since === undefined ? -Infinity : Date.now() - options.since;
  const keep = outcomeFilter(options.status);
  return (answer.invocations as InvocationRecord[])
    .filter((record) => Date.parse(record.start) >= since && keep(record))
    .slice(0, options.limit);
}

/**
 * Records as `logs` prints them: start, function, status, outcome, duration and request id in
 * columns, each followed by its console output, indented.
 */
function recordLines(records: InvocationRecord[]): string[] {
  return columns(
    records.map((record) => [
      record.start,
      record.function,
      String(record.status),
      record.outcome,
      `${record.durationMs.total}ms`,
      record.requestId,
    ]),
  ).flatMap((line, i) => [line, ...records[i].logs.map((log) => `    ${log}`)]);
}

/**
 * `new --template package`: the folder `<dir>/<name>/` with package.json, index.ts and
 * event.json; the next steps on stderr. @throws CliError when the folder, or a one-file
 * function of that name, is there already (nothing is written then).
 */
function writePackage(name: string, dir: string, json: boolean): void {
  const folder = path.join(dir, name);
  for (const extension of ['js', 'ts']) {
    const file = `${folder}.${extension}`;
    if (fs.existsSync(file)) throw new CliError(`${file} exists: '${name}' is taken`);
  }
  fs.mkdirSync(path.dirname(folder), { recursive: true });
  try {
    // Not recursive: a folder that is there (empty or not) is never written into.
    fs.mkdirSync(folder);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CliError(`${folder} exists: not overwritten`);
    }
    throw err;
  }
  const files = packageFiles(name);
  for (const [file, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(folder, file), text, { flag: 'wx' });
  }
  const written = Object.keys(files).map((file) => path.join(folder, file));
  result(json, { name, dir: folder, files: written, template: 'package' }, () =>
    written.map((file) => `wrote ${file}`),
  );
  note(
    [
      'next:',
      `  cd ${folder} && npm install`,
      `  koa-faas deploy . --name ${name}   (or serve ${dir} as the server's FUNCTIONS_DIR)`,
      `  koa-faas invoke ${name} --data @event.json`,
    ].join('\n'),
  );
}

function readData(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
}
