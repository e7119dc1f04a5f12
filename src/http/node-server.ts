/**
 * The Node HTTP server around the Koa app (docs/spec.md §3): its timeouts, and the requests Koa
 * never sees, answered in the same JSON error shape as every other error:
 * - a malformed request, an unknown method, headers over Node's 16 KiB limit, a header timeout
 *   (`clientError`): 400 BAD_REQUEST, 431 HEADERS_TOO_LARGE, 408 REQUEST_TIMEOUT, then close;
 * - `Expect: 100-continue` with a Content-Length over MAX_BODY_BYTES: 413 instead of `100
 *   Continue`, so the body is never sent; any other expectation: 417.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { ExpectationFailedError, toErrorBody } from '../errors';
import type { FaasError } from '../errors';
import type { Logger } from '../observe/logger';
import { requestIdFor, tooLarge } from './error-handler';
import { isAdminPath, lockAdminAnswer, sandboxFunctionAnswer } from './function-sandbox';
import { bodyLimit } from './body';
import { lingerAfter } from './linger';
import type { LingerObserver } from './linger';

export interface NodeServerOptions {
  /** The invocation timeout (ms): a request may take it plus 30 s. */
  timeoutMs: number;
  /** MAX_BODY_BYTES: an `Expect: 100-continue` upload declared larger is refused unsent. */
  maxBodyBytes: number;
  /** MAX_DEPLOY_BODY, the same for a deploy (body.ts bodyLimit). */
  maxDeployBytes: number;
  /** CORS_ORIGIN, sent on these answers as on every other. */
  corsOrigin: string;
  logger: Logger;
  /** Told how each lingering close (linger.ts) ended. */
  lingered: LingerObserver;
}

/** A Node HTTP server that hands requests to `handle` (the Koa app's callback). */
export function createNodeServer(
  handle: http.RequestListener,
  options: NodeServerOptions,
): http.Server {
  const { corsOrigin, logger, lingered } = options;
  // Node checks header and request timeouts every connectionsCheckingInterval (30 s by
  // default), which would let a slow client hold a connection three times headersTimeout.
  const server = http.createServer({ connectionsCheckingInterval: 1000 }, handle);
  // Slow clients: a request must send its headers within 10 s and finish within the invocation
  // timeout plus 30 s; idle keep-alive connections close after 5 s.
  server.headersTimeout = 10_000;
  server.requestTimeout = options.timeoutMs + 30_000;
  server.keepAliveTimeout = 5_000;

  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const [status, code] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'HEADERS_TOO_LARGE']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'REQUEST_TIMEOUT']
          : [400, 'BAD_REQUEST'];
    const requestId = randomUUID();
    const body = JSON.stringify({
      error: { code, message: `${http.STATUS_CODES[status]}: ${err.code ?? 'malformed request'}` },
      requestId,
    });
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nX-Request-Id: ${requestId}\r\n` +
        `Access-Control-Allow-Origin: ${corsOrigin}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });

  /**
   * Answers a request Koa never sees, with the request id and CORS headers of every response,
   * logged as the error boundary logs; the connection closes, after discarding (bounded) a body
   * the client sends anyway, so that it reads this answer first (linger.ts).
   */
  const refuse = (req: http.IncomingMessage, res: http.ServerResponse, err: FaasError) => {
    const started = performance.now();
    const requestId = requestIdFor(req.headers['x-request-id']);
    const { status, body } = toErrorBody(err, requestId);
    const text = JSON.stringify(body);
    const path = (req.url ?? '/').split('?')[0];
    lingerAfter(req, res, lingered);
    if (isAdminPath(path)) lockAdminAnswer(res);
    else sandboxFunctionAnswer(res);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
      'X-Request-Id': requestId,
      'Access-Control-Allow-Origin': corsOrigin,
      ...(corsOrigin === '*' ? {} : { Vary: 'Origin' }),
      ...err.headers,
      Connection: 'close',
    });
    res.end(text);
    logger.child({ reqId: requestId }).info('request', {
      method: req.method,
      path,
      status,
      ms: Math.round((performance.now() - started) * 100) / 100,
      outcome: body.error.code,
    });
  };

  // `Expect` (RFC 9110 §10.1.1). Left to Node, every upload gets `100 Continue` and MAX_BODY
  // refuses it only after the client has sent it all. A chunked upload, whose size is not known
  // yet, gets `100 Continue` and the body parser's streaming limit, as without Expect.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const limit = bodyLimit(options, req.method, (req.url ?? '').split('?')[0]);
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      refuse(req, res, tooLarge(`request body is over ${limit} bytes`));
      return;
    }
    res.writeContinue();
    void handle(req, res);
  });
  // Any other expectation: 417 in our shape (Node's own 417 has no body, request id or CORS).
  server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) =>
    refuse(req, res, new ExpectationFailedError('only "Expect: 100-continue" is supported')),
  );
  return server;
}

/** Listens on `port` and `host`; resolves once bound, rejects if binding fails. */
export function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
