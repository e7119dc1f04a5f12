/**
 * Entry point: loadConfig → createServer → listen; SIGTERM/SIGINT drain and exit 0, a second
 * signal exits 1 at once. The only module that touches process.on and process.exit.
 */
import { loadConfig } from './config';
import { ConfigError } from './errors';
import { createLogger } from './observe/logger';
import { createServer } from './server';

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
  } catch (err) {
    logger.error('failed to start', { err });
    await server.close().catch(() => undefined);
    process.exit(1);
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info('draining', { signal, graceMs: config.shutdownGraceMs });
    // If the drain itself hangs, do not hang with it.
    setTimeout(() => {
      logger.error('drain did not finish in time: exiting');
      process.exit(1);
    }, config.shutdownGraceMs + 5000).unref();
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
