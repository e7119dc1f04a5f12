/**
 * The globals script, part 3 (in install()'s scope): the way to the server's services (docs/spec.md
 * §8) and `context.kv`, `context.env`, `context.secrets`.
 *
 * `hostRequest(op, argsJson, onReply)` is the runner's transport: it sends one call to the
 * server, attributed host-side to the invocation running now, and later calls
 * `onReply(true, resultJson)` or `onReply(false, errorJson)` (`{ name, message, code? }`). Only
 * strings cross it, and `onReply` is a function of this closure: function code never holds the
 * transport, never sees a host object, and gets promises, values and errors of its own realm.
 * A reply is taken once; one that is not a string is read as a failure.
 *
 * The KV client checks the types of its arguments here (a wrong type never costs a round trip)
 * and serializes values with the JSON.stringify captured before any function code ran; the
 * server checks everything that is a policy: key length, value and namespace sizes.
 * `attachServices(context)` is what the envelope calls for every invocation: one frozen client
 * per sandbox (it holds no state: the server knows which invocation calls), and the context's
 * `env` and `secrets` frozen (an empty frozen object when the server sends none).
 */

/**
 * One call to the server: onOk(resultJson) or onFail(errorJson or undefined), once, later.
 * Throws a sandbox Error at once when the transport refuses the call (outside an invocation).
 */
function serviceRequest(op, argsJson, onOk, onFail) {
  let replied = false;
  const onReply = function (ok, text) {
    if (replied) return;
    replied = true;
    try {
      if (ok === true && typeof text === 'string') onOk(text);
      else onFail(typeof text === 'string' ? text : undefined);
    } catch (_) {
      /* the callbacks settle a promise; nothing to report */
    }
  };
  try {
    apply(hostRequest, undefined, [op, argsJson, onReply]);
  } catch (err) {
    // Only a message crosses: the transport's error is the host's object.
    let message = 'the service is not available';
    try {
      if (err !== null && typeof err === 'object' && typeof err.message === 'string')
        message = stringSlice(err.message, 0, 500);
    } catch (_) {
      /* keep it */
    }
    throw serviceFailure(
      op === 'fetch' ? TypeErrorCtor : ErrorCtor,
      op === 'fetch' ? 'fetch failed: ' + message : message,
      op === 'fetch' ? undefined : 'KV_UNAVAILABLE',
    );
  }
}

function serviceFailure(Ctor, message, code) {
  const error = new Ctor(message);
  if (code !== undefined)
    defineProperty(error, 'code', {
      value: code,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  return error;
}

/** The server's error reply as a sandbox error: a TypeError for fetch, else its name's class, with its code. */
function serviceError(text, isFetch) {
  let reply;
  try {
    reply = text === undefined ? undefined : jsonParse(text);
  } catch (_) {
    reply = undefined;
  }
  const fields = reply !== null && typeof reply === 'object';
  const message =
    fields && typeof reply.message === 'string'
      ? reply.message
      : isFetch
        ? 'fetch failed'
        : 'the service failed';
  const code =
    fields && typeof reply.code === 'string' ? reply.code : isFetch ? undefined : 'KV_UNAVAILABLE';
  const Ctor = isFetch || (fields && reply.name === 'TypeError') ? TypeErrorCtor : ErrorCtor;
  return serviceFailure(Ctor, message, code);
}

function kvCall(op, args) {
  return new PromiseCtor((resolve, reject) => {
    const onOk = (text) => {
      let value;
      try {
        value = jsonParse(text);
      } catch (_) {
        return reject(
          serviceFailure(ErrorCtor, 'the service sent a malformed reply', 'KV_UNAVAILABLE'),
        );
      }
      resolve(value);
    };
    serviceRequest(op, jsonStringify(args), onOk, (text) => reject(serviceError(text, false)));
  });
}
const rejectWith = (error) => new PromiseCtor((_, reject) => reject(error));
const typeName = (value) => (value === null ? 'null' : typeof value);
const isFiniteNumber = (value) =>
  typeof value === 'number' && value === value && value !== 1 / 0 && value !== -1 / 0;

function kvKey(key, method) {
  if (typeof key !== 'string')
    throw serviceFailure(
      TypeErrorCtor,
      'kv.' + method + ': the key must be a string (got ' + typeName(key) + ')',
      'KV_INVALID_KEY',
    );
  return key;
}

function kvOptions(options, method) {
  if (options === undefined || options === null) return undefined;
  if (typeof options !== 'object')
    throw new TypeErrorCtor(
      'kv.' + method + ': the options must be an object (got ' + typeName(options) + ')',
    );
  return options;
}

/** The value as JSON text; what JSON would drop or cannot write is a TypeError here, not a silent loss. */
function kvValue(value) {
  const json = jsonStringify(value, (key, item) => {
    const type = typeof item;
    if (type === 'function' || type === 'symbol' || type === 'bigint') {
      throw new TypeErrorCtor(
        'kv.put: the value' +
          (key === '' ? '' : ' at key "' + key + '"') +
          ' is a ' +
          type +
          ', which is not a JSON value',
      );
    }
    return item;
  });
  if (typeof json !== 'string')
    throw new TypeErrorCtor('kv.put: the value is undefined, which is not a JSON value');
  return json;
}

let kvClient;
function getKv() {
  if (kvClient) return kvClient;
  const client = {
    get(key) {
      try {
        return kvCall('kv.get', { key: kvKey(key, 'get') });
      } catch (err) {
        return rejectWith(err);
      }
    },
    put(key, value, options = undefined) {
      try {
        const args = { key: kvKey(key, 'put'), value: kvValue(value) };
        options = kvOptions(options, 'put');
        if (options !== undefined) {
          const ttl = options.ttl;
          if (ttl !== undefined) {
            if (!isFiniteNumber(ttl) || ttl < 1)
              throw new TypeErrorCtor(
                'kv.put: ttl must be a number of seconds, at least 1 (got ' +
                  (typeof ttl === 'number' ? toStr(ttl) : typeName(ttl)) +
                  ')',
              );
            args.ttl = ttl;
          }
          if (options.ifAbsent) args.ifAbsent = true;
        }
        return kvCall('kv.put', args);
      } catch (err) {
        return rejectWith(err);
      }
    },
    delete(key) {
      try {
        return kvCall('kv.delete', { key: kvKey(key, 'delete') });
      } catch (err) {
        return rejectWith(err);
      }
    },
    incr(key, by = 1) {
      try {
        const args = { key: kvKey(key, 'incr'), by: by };
        if (!isFiniteNumber(by))
          throw new TypeErrorCtor(
            'kv.incr: by must be a finite number (got ' +
              (typeof by === 'number' ? toStr(by) : typeName(by)) +
              ')',
          );
        return kvCall('kv.incr', args);
      } catch (err) {
        return rejectWith(err);
      }
    },
    list(options = undefined) {
      try {
        const args = {};
        options = kvOptions(options, 'list');
        if (options !== undefined) {
          const { prefix, cursor, limit } = options;
          if (prefix !== undefined) {
            if (typeof prefix !== 'string')
              throw new TypeErrorCtor(
                'kv.list: prefix must be a string (got ' + typeName(prefix) + ')',
              );
            args.prefix = prefix;
          }
          if (cursor !== undefined) {
            if (typeof cursor !== 'string')
              throw new TypeErrorCtor(
                'kv.list: cursor must be a string (got ' + typeName(cursor) + ')',
              );
            args.cursor = cursor;
          }
          if (limit !== undefined) {
            if (!isInteger(limit) || limit < 1 || limit > 1000)
              throw new TypeErrorCtor(
                'kv.list: limit must be an integer from 1 to 1000 (got ' +
                  (typeof limit === 'number' ? toStr(limit) : typeName(limit)) +
                  ')',
              );
            args.limit = limit;
          }
        }
        return kvCall('kv.list', args);
      } catch (err) {
        return rejectWith(err);
      }
    },
  };
  const names = objectKeys(client);
  for (let i = 0; i < names.length; i++) freeze(client[names[i]]);
  kvClient = freeze(client);
  return kvClient;
}

const frozenOrEmpty = (value) => freeze(value !== null && typeof value === 'object' ? value : {});

/** Adds the services to one invocation's context (the envelope's parse of the server's JSON). */
function attachServices(context) {
  if (context === null || typeof context !== 'object') return;
  context.kv = getKv();
  context.env = frozenOrEmpty(context.env);
  context.secrets = frozenOrEmpty(context.secrets);
}
