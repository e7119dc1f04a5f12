/**
 * The data commands: `secrets set|list|delete` and `kv get|put|delete|list` (the admin routes
 * /_/secrets and /_/kv/<function>, docs/http-api.md), and `login`, which stores the URL and token
 * the other commands use.
 */
import type { Command } from 'commander';
import type {
  KvDeleteAnswer,
  KvListAnswer,
  KvPutAnswer,
  SecretListAnswer,
  SecretPutAnswer,
} from '../http/admin/api';
import { admin, CliError, namePath } from './client';
import { columns, note, result } from './output';
import { configPath, readConfig, resolveSettings, writeConfig } from './settings';
import type { GlobalOptions } from './settings';

const settingsOf = (command: Command) => resolveSettings(command.optsWithGlobals<GlobalOptions>());

/** All of stdin, as UTF-8 text. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const kvPath = (fn: string, key?: string) =>
  `/_/kv/${namePath(fn)}${key === undefined ? '' : `?key=${encodeURIComponent(key)}`}`;

export function dataCommands(program: Command): void {
  const secrets = program.command('secrets').description('the secrets functions read');

  secrets
    .command('set')
    .description("store a secret; the value from stdin when it is '-' or left out")
    .argument('<name>', 'the secret name: [A-Za-z_][A-Za-z0-9_]*')
    .argument('[value]', "the value, or '-' to read it from stdin")
    .action(
      async (name: string, value: string | undefined, _options: unknown, command: Command) => {
        const settings = settingsOf(command);
        // From stdin, one final newline (as `echo` adds) is not part of the value.
        const text =
          value === undefined || value === '-' ? (await readStdin()).replace(/\r?\n$/, '') : value;
        const answer = await admin<SecretPutAnswer>(
          settings,
          `/_/secrets/${encodeURIComponent(name)}`,
          {
            method: 'PUT',
            body: text,
            headers: { 'content-type': 'text/plain; charset=utf-8' },
          },
        );
        result(
          settings.json,
          answer,
          () => `${answer.created ? 'created' : 'replaced'} ${answer.name}`,
        );
      },
    );

  secrets
    .command('list')
    .description('the secret names and when each was set (never the values)')
    .action(async (_options: unknown, command: Command) => {
      const settings = settingsOf(command);
      const answer = await admin<SecretListAnswer>(settings, '/_/secrets');
      result(settings.json, answer, () =>
        columns(answer.secrets.map((secret) => [secret.name, secret.updatedAt])),
      );
    });

  secrets
    .command('delete')
    .description('remove a secret')
    .argument('<name>', 'the secret name')
    .action(async (name: string, _options: unknown, command: Command) => {
      const settings = settingsOf(command);
      await admin(settings, `/_/secrets/${encodeURIComponent(name)}`, { method: 'DELETE' });
      result(settings.json, { name, deleted: true }, () => `deleted ${name}`);
    });

  const kv = program.command('kv').description("a function's KV namespace");

  kv.command('get')
    .description('print the JSON value of a key')
    .argument('<function>', 'the function (its namespace)')
    .argument('<key>', 'the key')
    .action(async (fn: string, key: string, _options: unknown, command: Command) => {
      const settings = settingsOf(command);
      const value = await admin<unknown>(settings, kvPath(fn, key));
      result(settings.json, value, () => JSON.stringify(value));
    });

  kv.command('put')
    .description('store a value: JSON when it parses as JSON, else the text as a string')
    .argument('<function>', 'the function (its namespace)')
    .argument('<key>', 'the key')
    .argument('<value>', 'the value')
    .option('--ttl <seconds>', 'expire after this many seconds')
    .action(
      async (
        fn: string,
        key: string,
        value: string,
        options: { ttl?: string },
        command: Command,
      ) => {
        const settings = settingsOf(command);
        let json = JSON.stringify(value);
        try {
          JSON.parse(value);
          json = value;
        } catch {
          // Not JSON: stored as a string.
        }
        const ttl = options.ttl === undefined ? '' : `&ttl=${encodeURIComponent(options.ttl)}`;
        const answer = await admin<KvPutAnswer>(settings, kvPath(fn, key) + ttl, {
          method: 'PUT',
          body: json,
          headers: { 'content-type': 'application/json' },
        });
        result(settings.json, answer, () => (answer.written ? `stored ${key}` : `kept ${key}`));
      },
    );

  kv.command('delete')
    .description('remove a key')
    .argument('<function>', 'the function (its namespace)')
    .argument('<key>', 'the key')
    .action(async (fn: string, key: string, _options: unknown, command: Command) => {
      const settings = settingsOf(command);
      const answer = await admin<KvDeleteAnswer>(settings, kvPath(fn, key), { method: 'DELETE' });
      if (!answer.deleted)
        throw new CliError(`NOT_FOUND: no key ${JSON.stringify(key)} in '${fn}'`);
      result(settings.json, answer, () => `deleted ${key}`);
    });

  kv.command('list')
    .description('the keys of a namespace (every page)')
    .argument('<function>', 'the function (its namespace)')
    .option('--prefix <prefix>', 'only keys that start with it')
    .action(async (fn: string, options: { prefix?: string }, command: Command) => {
      const settings = settingsOf(command);
      const keys: KvListAnswer['keys'] = [];
      let cursor: string | undefined;
      do {
        const query = new URLSearchParams();
        if (options.prefix !== undefined) query.set('prefix', options.prefix);
        if (cursor !== undefined) query.set('cursor', cursor);
        const page = await admin<KvListAnswer>(settings, `${kvPath(fn)}?${query}`);
        keys.push(...page.keys);
        cursor = page.cursor;
      } while (cursor !== undefined);
      result(settings.json, { keys }, () =>
        keys.map(({ key, expiresAt }) =>
          expiresAt === undefined ? key : `${key}  (expires ${new Date(expiresAt).toISOString()})`,
        ),
      );
    });

  program
    .command('login')
    .description(`store the URL and token the other commands use, in ${configPath()}`)
    .action((_options: unknown, command: Command) => {
      const { url, token, json } = command.optsWithGlobals<GlobalOptions>();
      if (url === undefined && token === undefined) {
        throw new CliError('give --url, --token or both');
      }
      const file = configPath();
      const stored = { ...readConfig(file) };
      if (url !== undefined) stored.url = url.replace(/\/+$/, '');
      if (token !== undefined) stored.token = token;
      writeConfig(stored, file);
      const shown = {
        file,
        url: stored.url,
        token: stored.token === undefined ? undefined : 'set',
      };
      if (json) result(true, shown, () => '');
      else
        note(
          `stored ${[url !== undefined && 'url', token !== undefined && 'token'].filter(Boolean).join(' and ')} in ${file}`,
        );
    });
}
