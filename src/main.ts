/**
 * Entry point: loadConfig → createServer → listen; SIGTERM/SIGINT drain and exit 0, a second
 * signal exits 1 at once (except one relayed copy of the first, below). The only module that
 * touches process.on and process.exit.
 */
import path from 'node:path';
import { TOKEN_FILE, adminToken } from './admin-token';
import { DRAIN_MARGIN_MS, loadConfig } from './config';
import { ConfigError } from './errors';
import { createLogger } from './observe/logger';
import { createServer } from './server';

/**
 * `npm start` (which `exec`s this process) relays every SIGTERM/SIGINT it gets to us, and a
 * terminal's Ctrl-C or systemd's default stop signal npm and us alike: then the same signal
 * arrives twice, milliseconds apart. One repeat of the first signal this soon is that copy, not
 * an operator's second signal; it must not turn a drain into an exit 1.
 */
const RELAYED_COPY_MS = 1000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`koa-faas: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const admin = adminToken(config, logger);
  config = { ...config, adminToken: admin.token };
  const server = createServer(config, logger);
  try {
    const address = await server.listen();
    logger.announce('listening', {
      url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
      port: address.port,
      functionsDir: config.functionsDir,
      workers: config.workers,
      timeoutMs: config.timeoutMs,
      isolation: config.isolation,
    });
    // A token this server keeps itself is shown once per start, as a console link (the fragment
    // never reaches a server: the console reads it and keeps it in the tab).
    if (admin.source === 'file' || admin.source === 'created') {
      const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
      logger.announce('console', {
        url: `http://${host.includes(':') ? `[${host}]` : host}:${address.port}/_/ui/#token=${admin.token}`,
        tokenFile: path.join(config.dataDir, TOKEN_FILE),
      });
    }
  } catch (err) {
    logger.error('failed to start', { err });
    await server.close().catch(() => undefined);
    process.exit(1);
  }

  let first: { signal: NodeJS.Signals; at: number; copySeen: boolean } | undefined;
  const stop = (signal: NodeJS.Signals) => {
    if (first) {
      if (
        !first.copySeen &&
        signal === first.signal &&
        performance.now() - first.at < RELAYED_COPY_MS
      ) {
        first.copySeen = true;
        logger.debug('same signal again at once: taken as a relayed copy', { signal });
        return;
      }
      logger.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    first = { signal, at: performance.now(), copySeen: false };
    logger.info('draining', { signal, graceMs: config.shutdownGraceMs });
    // If the drain itself hangs, do not hang with it.
    setTimeout(() => {
      logger.error('drain did not finish in time: exiting');
      process.exit(1);
    }, config.shutdownGraceMs + DRAIN_MARGIN_MS).unref();
    server.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error('stop failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
