/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope):
 * `structuredClone`, as V8's serializer (which Node 20 uses) treats the value: primitives; plain
 * objects (own enumerable string keys, read with their getters, the prototype dropped); arrays
 * (holes and extra keys kept); Date, RegExp (lastIndex reset), Boolean/Number/String/BigInt
 * objects, Map, Set, ArrayBuffer (resizable kept), typed arrays and DataView (views of one buffer
 * still share the clone of it); errors (name picks the prototype among the standard ones, else
 * Error; message, stack and cause kept); identity and cycles kept. Functions, symbols, promises,
 * weak collections, generators, iterators and `arguments` throw a DataCloneError with Node's
 * message. Kinds are recognised by their internal slots (a getter that throws on anything else),
 * never by `instanceof` or a prototype.
 *
 * Deviations: `transfer` is checked as Node checks it, but the listed buffers are copied, not
 * detached (the sandbox has no way to detach one); a SharedArrayBuffer comes back as itself.
 */

const ArrayCtor = Array;
const DateCtor = Date;
const RegExpCtor = RegExp;
const ERRORS = {
  __proto__: null,
  EvalError: EvalError,
  RangeError: RangeError,
  ReferenceError: ReferenceError,
  SyntaxError: SyntaxError,
  TypeError: TypeError,
  URIError: URIError,
};
const TYPED_ARRAYS = {
  __proto__: null,
  Int8Array: Int8Array,
  Uint8Array: Uint8Array,
  Uint8ClampedArray: Uint8ClampedArray,
  Int16Array: Int16Array,
  Uint16Array: Uint16Array,
  Int32Array: Int32Array,
  Uint32Array: Uint32Array,
  Float32Array: Float32Array,
  Float64Array: Float64Array,
  BigInt64Array: BigInt64Array,
  BigUint64Array: BigUint64Array,
};
const UNCLONEABLE = {
  __proto__: null,
  Promise: '#<Promise>',
  WeakMap: '#<WeakMap>',
  WeakSet: '#<WeakSet>',
  Arguments: '#<Object>',
  'Map Iterator': '#<Object>',
  'Set Iterator': '#<Object>',
  'Array Iterator': '#<Object>',
  'String Iterator': '#<Object>',
  'RegExp String Iterator': '#<Object>',
  Generator: '[object Generator]',
  AsyncGenerator: '[object AsyncGenerator]',
  Symbol: '[object Symbol]',
};
const dateTime = uncurry(Date.prototype.getTime);
const regExpSource = getter(RegExp.prototype, 'source');
const regExpFlags = getter(RegExp.prototype, 'flags');
const VALUE_OF = {
  __proto__: null,
  Boolean: uncurry(Boolean.prototype.valueOf),
  Number: uncurry(Number.prototype.valueOf),
  String: uncurry(String.prototype.valueOf),
  BigInt: uncurry(BigInt.prototype.valueOf),
};
const symbolToString = uncurry(Symbol.prototype.toString);
const mapSize = getter(Map.prototype, 'size');
const mapForEach = uncurry(Map.prototype.forEach);
const setSize = getter(Set.prototype, 'size');
const setForEach = uncurry(Set.prototype.forEach);
const setAdd = uncurry(Set.prototype.add);
const setHas = uncurry(Set.prototype.has);
const weakMapHas = uncurry(WeakMap.prototype.has);
const weakSetHas = uncurry(WeakSet.prototype.has);
const BRANDS = {
  __proto__: null,
  WeakMap: (value) => weakMapHas(value, {}),
  WeakSet: (value) => weakSetHas(value, {}),
};
const resizableDescriptor = getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable');
const arrayBufferResizable = resizableDescriptor ? uncurry(resizableDescriptor.get) : () => false;
const arrayBufferMax = resizableDescriptor
  ? getter(ArrayBuffer.prototype, 'maxByteLength')
  : undefined;

const cloneError = (message) => domException(message, 'DataCloneError');

/** Sets a data property as CreateDataProperty does ('__proto__' is a key, not the prototype). */
function put(target, key, value) {
  if (key === '__proto__')
    defineProperty(target, key, {
      value: value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  else target[key] = value;
}

/** The clone of a value whose kind its tag suggests; undefined when the slot check says no. */
function cloneKind(value, tag, memory) {
  let result;
  switch (tag) {
    case 'Date':
      result = new DateCtor(dateTime(value));
      break;
    case 'RegExp':
      result = new RegExpCtor(regExpSource(value), regExpFlags(value));
      break;
    case 'Boolean':
    case 'Number':
    case 'String':
    case 'BigInt':
      result = ObjectCtor(VALUE_OF[tag](value));
      break;
    case 'ArrayBuffer': {
      const length = arrayBufferBytes(value);
      result = arrayBufferResizable(value)
        ? new ArrayBufferCtor(length, { maxByteLength: arrayBufferMax(value) })
        : new ArrayBufferCtor(length);
      typedArraySet(new Uint8ArrayCtor(result), new Uint8ArrayCtor(value));
      break;
    }
    case 'SharedArrayBuffer':
      sharedBufferBytes(value);
      result = value;
      break;
    case 'Map': {
      mapSize(value);
      result = new MapCtor();
      mapSet(memory, value, result);
      const entries = [];
      mapForEach(value, (item, key) => {
        entries[entries.length] = key;
        entries[entries.length] = item;
      });
      for (let i = 0; i < entries.length; i += 2)
        mapSet(result, cloneValue(entries[i], memory), cloneValue(entries[i + 1], memory));
      return result;
    }
    case 'Set': {
      setSize(value);
      result = new SetCtor();
      mapSet(memory, value, result);
      const items = [];
      setForEach(value, (item) => {
        items[items.length] = item;
      });
      for (let i = 0; i < items.length; i++) setAdd(result, cloneValue(items[i], memory));
      return result;
    }
    case 'Error': {
      const messageDescriptor = getOwnPropertyDescriptor(value, 'message');
      const causeDescriptor = getOwnPropertyDescriptor(value, 'cause');
      const Ctor = ERRORS[toStr(value.name)] || ErrorCtor;
      const hasMessage = messageDescriptor !== undefined && hasOwn(messageDescriptor, 'value');
      const message = hasMessage ? toStr(messageDescriptor.value) : undefined;
      const stack = value.stack;
      result = new Ctor();
      mapSet(memory, value, result);
      const hidden = (key, item) =>
        defineProperty(result, key, {
          value: item,
          writable: true,
          enumerable: false,
          configurable: true,
        });
      if (hasMessage) hidden('message', message);
      hidden('stack', typeof stack === 'string' ? stack : undefined);
      if (causeDescriptor !== undefined && hasOwn(causeDescriptor, 'value'))
        hidden('cause', cloneValue(causeDescriptor.value, memory));
      return result;
    }
    default: {
      const uncloneable = UNCLONEABLE[tag];
      if (uncloneable === undefined) return undefined;
      if (BRANDS[tag] !== undefined) BRANDS[tag](value);
      throw cloneError(uncloneable + ' could not be cloned.');
    }
  }
  mapSet(memory, value, result);
  return result;
}

function cloneValue(value, memory) {
  const type = typeof value;
  if (type === 'symbol') throw cloneError(symbolToString(value) + ' could not be cloned.');
  if (type === 'function') throw cloneError(functionToString(value) + ' could not be cloned.');
  if (value === null || type !== 'object') return value;
  if (mapHas(memory, value)) return mapGet(memory, value);
  if (value === global) throw cloneError('#<Object> could not be cloned.');
  let result;
  if (isArray(value)) {
    result = new ArrayCtor(value.length);
    mapSet(memory, value, result);
  } else {
    const typedName = typedArrayTag(value);
    if (typedName !== undefined) {
      const buffer = cloneValue(typedArrayBuffer(value), memory);
      result = new TYPED_ARRAYS[typedName](
        buffer,
        typedArrayOffset(value),
        typedArrayLength(value),
      );
      mapSet(memory, value, result);
      return result;
    }
    if (isView(value)) {
      const buffer = cloneValue(dataViewBuffer(value), memory);
      result = new DataViewCtor(buffer, dataViewOffset(value), dataViewBytes(value));
      mapSet(memory, value, result);
      return result;
    }
    const tag = stringSlice(objectToString(value), 8, -1);
    if (tag !== 'Object') {
      try {
        result = cloneKind(value, tag, memory);
      } catch (error) {
        // A failed slot check (a look-alike object) is cloned as a plain object; other errors stand.
        if (!(error instanceof TypeErrorCtor) || mapHas(memory, value)) throw error;
        result = undefined;
      }
      if (result !== undefined) return result;
    }
    result = {};
    mapSet(memory, value, result);
  }
  const keys = objectKeys(value);
  for (let i = 0; i < keys.length; i++) put(result, keys[i], cloneValue(value[keys[i]], memory));
  return result;
}

function structuredClone(value, options = undefined) {
  if (arguments.length === 0)
    throw nodeError(TypeErrorCtor, 'ERR_MISSING_ARGS', 'The value argument must be specified');
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object')
      throw nodeError(
        TypeErrorCtor,
        'ERR_INVALID_ARG_TYPE',
        'The options argument must be either an object or undefined',
      );
    const transfer = options.transfer;
    if (transfer !== undefined) {
      if (
        transfer === null ||
        typeof transfer !== 'object' ||
        typeof transfer[SymbolIterator] !== 'function'
      ) {
        throw nodeError(
          TypeErrorCtor,
          'ERR_INVALID_ARG_TYPE',
          'Optional transferList argument must be an iterable',
        );
      }
      const seen = new SetCtor();
      for (const item of transfer) {
        try {
          arrayBufferBytes(item);
        } catch (_) {
          throw nodeError(
            TypeErrorCtor,
            'ERR_INVALID_TRANSFER_OBJECT',
            'Found invalid object in transferList',
          );
        }
        if (setHas(seen, item)) throw cloneError('Transfer list contains duplicate ArrayBuffer');
        setAdd(seen, item);
      }
    }
  }
  return cloneValue(value, new MapCtor());
}
