/**
 * Every error we raise on purpose: a stable `code`, an HTTP `statusCode`, and `expose` saying
 * whether its message may reach the client. The catalogue is docs/errors.md.
 */
export abstract class FaasError extends Error {
  abstract readonly code: string;
  abstract readonly statusCode: number;
  /** Whether the message is safe to show to the caller (ours always are; see error-handler.ts). */
  readonly expose: boolean = true;
  /** Extra headers for the response, e.g. Retry-After. */
  headers?: Record<string, string>;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidFunctionNameError extends FaasError {
  readonly code = 'INVALID_FUNCTION_NAME';
  readonly statusCode = 400;
}

export class InvalidBodyError extends FaasError {
  readonly code = 'INVALID_BODY';
  readonly statusCode = 400;
}

export class UnauthorizedError extends FaasError {
  readonly code = 'UNAUTHORIZED';
  readonly statusCode = 401;
}

export class ForbiddenError extends FaasError {
  readonly code = 'FORBIDDEN';
  readonly statusCode = 403;
}

export class FunctionNotFoundError extends FaasError {
  readonly code = 'FUNCTION_NOT_FOUND';
  readonly statusCode = 404;
}

export class NotFoundError extends FaasError {
  readonly code = 'NOT_FOUND';
  readonly statusCode = 404;
}

export class MethodNotAllowedError extends FaasError {
  readonly code = 'METHOD_NOT_ALLOWED';
  readonly statusCode = 405;
}

export class PayloadTooLargeError extends FaasError {
  readonly code = 'PAYLOAD_TOO_LARGE';
  readonly statusCode = 413;
}

/** A charset or content encoding the server cannot decode (docs/spec.md §2). */
export class UnsupportedMediaTypeError extends FaasError {
  readonly code = 'UNSUPPORTED_MEDIA_TYPE';
  readonly statusCode = 415;
}

/** An `Expect` request header other than `100-continue`: the server cannot meet it. */
export class ExpectationFailedError extends FaasError {
  readonly code = 'EXPECTATION_FAILED';
  readonly statusCode = 417;
}

/** A function file that does not compile or does not yield a function. */
export class FunctionCompileError extends FaasError {
  readonly code = 'FUNCTION_COMPILE_ERROR';
  statusCode = 500;
  /** 1-based position in the function's own file, when known. */
  readonly line?: number;
  readonly column?: number;
  /**
   * The file the position is in, relative to the function's folder (a package's module, e.g.
   * `lib/parse.ts`), when it is not the function's entry file.
   */
  readonly file?: string;

  constructor(message: string, position: { line?: number; column?: number; file?: string } = {}) {
    super(message);
    this.line = position.line;
    this.column = position.column;
    if (position.file !== undefined) this.file = position.file;
  }
}

/** The function threw or rejected. `type` is the thrown error's name, e.g. `TypeError`. */
export class FunctionError extends FaasError {
  readonly code = 'FUNCTION_ERROR';
  readonly statusCode = 500;
  readonly type: string;
  /** The function's own stack, for the log only. */
  readonly functionStack?: string;

  constructor(type: string, message: string, functionStack?: string) {
    super(message);
    this.type = type;
    this.functionStack = functionStack;
  }
}

export class InvalidResultError extends FaasError {
  readonly code = 'INVALID_RESULT';
  readonly statusCode = 500;
}

export class WorkerCrashedError extends FaasError {
  readonly code = 'WORKER_CRASHED';
  readonly statusCode = 502;
}

/** An async request reusing the `X-Request-Id` of a queued invocation of another function. */
export class RequestIdConflictError extends FaasError {
  readonly code = 'REQUEST_ID_CONFLICT';
  readonly statusCode = 409;
}

/** With REDIS_URL, FUNCTIONS_DIR is each replica's read-only layer (docs/spec.md §10). */
export class FunctionReadOnlyError extends FaasError {
  readonly code = 'FUNCTION_READ_ONLY';
  readonly statusCode = 409;
}

/** A function at its `config.maxConcurrency`, its fair share of the queue, or its quarantine queue. */
export class TooManyRequestsError extends FaasError {
  readonly code = 'TOO_MANY_REQUESTS';
  readonly statusCode = 429;
  override headers: Record<string, string> = { 'Retry-After': '1' };
}

export class OverloadedError extends FaasError {
  readonly code = 'OVERLOADED';
  readonly statusCode = 503;
}

/** The pool is closed or closing: the server is draining. The connection closes after it. */
export class ShuttingDownError extends FaasError {
  readonly code = 'SHUTTING_DOWN';
  readonly statusCode = 503;
  override headers = { Connection: 'close' };
}

export class FunctionTimeoutError extends FaasError {
  readonly code = 'FUNCTION_TIMEOUT';
  readonly statusCode = 504;
}

/** A KV key that is empty, over 512 bytes of UTF-8, or not well-formed Unicode (docs/spec.md §8). */
export class KvInvalidKeyError extends FaasError {
  readonly code = 'KV_INVALID_KEY';
  readonly statusCode = 400;
}

/** A KV option or argument out of range: `ttl`, `limit`, `cursor`, `prefix`, `incr`'s `by`. */
export class KvInvalidArgumentError extends FaasError {
  readonly code = 'KV_INVALID_ARGUMENT';
  readonly statusCode = 400;
}

/** A KV value over KV_MAX_VALUE bytes of JSON. */
export class KvValueTooLargeError extends FaasError {
  readonly code = 'KV_VALUE_TOO_LARGE';
  readonly statusCode = 413;
}

/** A write that would take a function's namespace over KV_MAX_BYTES (507 Insufficient Storage). */
export class KvQuotaExceededError extends FaasError {
  readonly code = 'KV_QUOTA_EXCEEDED';
  readonly statusCode = 507;
}

/** `incr` on a value that is not a number, or a result outside the safe range. */
export class KvNotANumberError extends FaasError {
  readonly code = 'KV_NOT_A_NUMBER';
  readonly statusCode = 409;
}

/** The store's backend does not answer (Redis down or unreachable, the SQLite file unusable). */
export class KvUnavailableError extends FaasError {
  readonly code = 'KV_UNAVAILABLE';
  readonly statusCode = 503;
  override headers: Record<string, string> = { 'Retry-After': '1' };
}

/** Any of the KV errors above: what a failed `context.kv` call throws (its `code` says which). */
export type KvError =
  | KvInvalidKeyError
  | KvInvalidArgumentError
  | KvValueTooLargeError
  | KvQuotaExceededError
  | KvNotANumberError
  | KvUnavailableError;

/** A secret name outside `[A-Za-z_][A-Za-z0-9_]{0,127}`, or a value that is not UTF-8 text. */
export class InvalidSecretError extends FaasError {
  readonly code = 'INVALID_SECRET';
  readonly statusCode = 400;
}

/** An `X-Callback-Url` that is not an absolute http(s) URL without credentials (docs/spec.md §9). */
export class InvalidCallbackUrlError extends FaasError {
  readonly code = 'INVALID_CALLBACK_URL';
  readonly statusCode = 400;
}

/** An `X-Callback-Url` the egress policy refuses (docs/spec.md §8, §9): checked when the request arrives. */
export class CallbackRefusedError extends FaasError {
  readonly code = 'CALLBACK_REFUSED';
  readonly statusCode = 400;
}

/**
 * An async invocation older than its `config.async.maxAgeSeconds` when its next attempt was
 * due: not started (again). Never an HTTP answer of its own: the invocation's recorded error.
 */
export class InvocationExpiredError extends FaasError {
  readonly code = 'INVOCATION_EXPIRED';
  readonly statusCode = 504;
}

/** A bad configuration value; raised at start-up, before the server listens. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_ERROR';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ErrorBody {
  error: {
    code: string;
    message: string;
    type?: string;
    file?: string;
    line?: number;
    column?: number;
  };
  requestId: string;
}

/**
 * The JSON body of an error response (docs/spec.md §3). Unknown errors are reported as 500 INTERNAL_ERROR
 * with the status text only: their messages may carry host details.
 */
export function toErrorBody(err: unknown, requestId: string): { status: number; body: ErrorBody } {
  if (err instanceof FaasError) {
    const error: ErrorBody['error'] = { code: err.code, message: err.message };
    if (err instanceof FunctionError) error.type = err.type;
    if (err instanceof FunctionCompileError) {
      if (err.file !== undefined) error.file = err.file;
      if (err.line !== undefined) error.line = err.line;
      if (err.column !== undefined) error.column = err.column;
    }
    return { status: err.statusCode, body: { error, requestId } };
  }
  return {
    status: 500,
    body: { error: { code: 'INTERNAL_ERROR', message: 'Internal Server Error' }, requestId },
  };
}

/** Why an outbound `fetch` failed (docs/spec.md §8); also the outcome label for its metrics. */
export type EgressErrorCode =
  | 'EGRESS_REFUSED'
  | 'FETCH_INVALID_REQUEST'
  | 'FETCH_DNS_FAILED'
  | 'FETCH_NETWORK_ERROR'
  | 'FETCH_TIMEOUT'
  | 'FETCH_TOO_LARGE'
  | 'FETCH_REDIRECT_REFUSED'
  | 'FETCH_TOO_MANY_REDIRECTS';

/**
 * An outbound `fetch` refused by the egress policy or failed (docs/spec.md §8). Not a FaasError: it never
 * becomes an HTTP response of its own; the sandbox rethrows its message as a `TypeError`, so the
 * message reads on its own ("fetch to https://x refused: …") and names no query string.
 */
export class EgressError extends Error {
  readonly code: EgressErrorCode;
  constructor(code: EgressErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EgressError';
    this.code = code;
  }
}
