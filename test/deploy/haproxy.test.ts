/**
 * deploy/haproxy/haproxy.cfg, the load balancer of "Running several replicas": it is exactly what
 * test/replicas/haproxy.ts generates for the ports of docs/replicas.md (so the replica tests run the shipped
 * configuration, only on their own ports), HAProxy accepts it, and its settings agree with the
 * server's (probe paths, timeouts against MAX_TIMEOUT_MS and the ready probe's bound). The
 * `haproxy -c` checks are skipped, saying so, when haproxy is not installed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config';
import { READY_PING_MS } from '../../src/http/admin/health';
import {
  EXAMPLE_CONFIG,
  HAPROXY_BIN,
  HAPROXY_MISSING,
  BACKEND,
  haproxyConfig,
} from '../support/haproxy';

const ROOT = path.join(__dirname, '..', '..', '..');
const SHIPPED = fs.readFileSync(path.join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8');

/** The lines of one section (`backend koa-faas`), indentation and comments removed. */
function section(config: string, header: string): string[] {
  const lines = config.split('\n');
  const start = lines.indexOf(header);
  assert.notEqual(start, -1, `no "${header}" section`);
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line !== '' && !line.startsWith(' ')) break;
    const text = line.trim();
    if (text !== '' && !text.startsWith('#')) out.push(text);
  }
  return out;
}

/** A HAProxy time (`75s`, `2000ms`, `1m`) in ms. */
function ms(value: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(value);
  assert.ok(m, `a time: ${value}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm'];
}

function setting(lines: string[], name: string): string {
  const line = lines.find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no "${name}"`);
  return line.slice(name.length + 1);
}

void describe('deploy/haproxy/haproxy.cfg', () => {
  void test('is what the replica tests run, for the ports of docs/replicas.md (3001–3003 behind :8080)', () => {
    assert.equal(SHIPPED, haproxyConfig(EXAMPLE_CONFIG));
  });

  void test('agrees with the server: probe path, timeouts, no retry after sending', () => {
    const defaults = section(SHIPPED, 'defaults');
    const server = loadConfig({});
    const rows: { what: string; check: () => void }[] = [
      {
        what: 'a replica has the longest invocation a function may ask for (MAX_TIMEOUT_MS)',
        check: () => assert.ok(ms(setting(defaults, 'timeout server')) > server.maxTimeoutMs),
      },
      {
        what: 'a health check outlasts /_/ready waiting for Redis',
        check: () => assert.ok(ms(setting(defaults, 'timeout check')) > READY_PING_MS),
      },
      {
        what: 'only a refused connection is retried (retry-on left at conn-failure)',
        check: () => {
          assert.ok(!defaults.some((l) => l.startsWith('retry-on')), 'no retry-on');
          assert.equal(setting(defaults, 'option redispatch'), '1');
        },
      },
      {
        what: 'every replica takes traffic while /_/ready answers 200',
        check: () => {
          assert.equal(setting(section(SHIPPED, 'frontend koa-faas'), 'default_backend'), BACKEND);
          const lines = section(SHIPPED, `backend ${BACKEND}`);
          assert.equal(setting(lines, 'http-check send'), 'meth GET uri /_/ready');
          assert.equal(setting(lines, 'http-check expect'), 'status 200');
          assert.match(setting(lines, 'default-server'), /^check /);
          assert.deepEqual(
            lines.filter((l) => l.startsWith('server ')),
            EXAMPLE_CONFIG.servers.map((srv) => `server ${srv.name} ${srv.address}`),
          );
        },
      },
    ];
    for (const row of rows) {
      try {
        row.check();
      } catch (err) {
        throw new Error(`${row.what}: ${(err as Error).message}`, { cause: err });
      }
    }
  });

  void test(
    'haproxy -c accepts it, and the configuration the tests generate',
    { skip: HAPROXY_MISSING },
    () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-haproxy-'));
      try {
        const generated = path.join(dir, 'test.cfg');
        fs.writeFileSync(
          generated,
          haproxyConfig({
            bind: '127.0.0.1:8080',
            servers: [{ name: 'r1', address: '127.0.0.1:1' }],
            statsSocket: path.join(dir, 'admin.sock'),
            checkMs: 500,
          }),
        );
        for (const file of [path.join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), generated]) {
          const out = execFileSync(HAPROXY_BIN as string, ['-c', '-f', file], {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe'],
            timeout: 10_000,
          });
          assert.match(out, /Configuration file is valid/, file);
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
