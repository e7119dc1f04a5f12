/**
 * The globals script, part 1 (in install()'s scope): the shared intrinsics every part uses. They
 * are captured here, while the context is still clean, so a function that replaces
 * `String.prototype.slice` or `JSON.parse` in its own context only confuses its own code, not these
 * globals. `uncurry(fn)(self, ...args)` is `fn.call(self, ...args)` without a lookup of `call` (the
 * trick of Node's primordials).
 */

const global = globalThis;
const ObjectCtor = Object;
const defineProperty = Object.defineProperty;
const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
const getPrototypeOf = Object.getPrototypeOf;
const setPrototypeOf = Object.setPrototypeOf;
const objectCreate = Object.create;
const objectKeys = Object.keys;
const freeze = Object.freeze;
const apply = Reflect.apply;
const ownKeys = Reflect.ownKeys;
const uncurry = Function.prototype.bind.bind(Function.prototype.call);
const hasOwn = uncurry(Object.prototype.hasOwnProperty);
const objectToString = uncurry(Object.prototype.toString);
const functionToString = uncurry(Function.prototype.toString);
const StringCtor = String;
const fromCharCode = String.fromCharCode;
const charCodeAt = uncurry(String.prototype.charCodeAt);
const stringSlice = uncurry(String.prototype.slice);
const indexOf = uncurry(String.prototype.indexOf);
const toLowerCase = uncurry(String.prototype.toLowerCase);
const toWellFormed = uncurry(String.prototype.toWellFormed);
const stringRepeat = uncurry(String.prototype.repeat);
const numberToString = uncurry(Number.prototype.toString);
const isArray = Array.isArray;
const arraySort = uncurry(Array.prototype.sort);
const arraySplice = uncurry(Array.prototype.splice);
const arrayJoin = uncurry(Array.prototype.join);
const jsonParse = JSON.parse;
const jsonStringify = JSON.stringify;
const mathFloor = Math.floor;
const mathMin = Math.min;
const isInteger = Number.isInteger;
const ErrorCtor = Error;
const TypeErrorCtor = TypeError;
const RangeErrorCtor = RangeError;
const PromiseCtor = Promise;
const MapCtor = Map;
const SetCtor = Set;
const WeakMapCtor = WeakMap;
const mapGet = uncurry(Map.prototype.get);
const mapSet = uncurry(Map.prototype.set);
const mapHas = uncurry(Map.prototype.has);
const SymbolIterator = Symbol.iterator;
const SymbolToStringTag = Symbol.toStringTag;
const IteratorPrototype = getPrototypeOf(getPrototypeOf([][SymbolIterator]()));
const ArrayBufferCtor = ArrayBuffer;
const Uint8ArrayCtor = Uint8Array;
const Uint16ArrayCtor = Uint16Array;
const DataViewCtor = DataView;
const isView = ArrayBuffer.isView;
const TypedArrayPrototype = getPrototypeOf(Uint8Array.prototype);
const getter = (proto, name) => uncurry(getOwnPropertyDescriptor(proto, name).get);
const typedArrayTag = getter(TypedArrayPrototype, SymbolToStringTag);
const typedArrayBuffer = getter(TypedArrayPrototype, 'buffer');
const typedArrayOffset = getter(TypedArrayPrototype, 'byteOffset');
const typedArrayBytes = getter(TypedArrayPrototype, 'byteLength');
const typedArrayLength = getter(TypedArrayPrototype, 'length');
const subarray = uncurry(TypedArrayPrototype.subarray);
const typedArraySet = uncurry(TypedArrayPrototype.set);
const dataViewBuffer = getter(DataView.prototype, 'buffer');
const dataViewOffset = getter(DataView.prototype, 'byteOffset');
const dataViewBytes = getter(DataView.prototype, 'byteLength');
const arrayBufferBytes = getter(ArrayBuffer.prototype, 'byteLength');
const sharedBufferBytes =
  typeof SharedArrayBuffer === 'function'
    ? getter(SharedArrayBuffer.prototype, 'byteLength')
    : undefined;
const arrayBufferSlice = uncurry(ArrayBuffer.prototype.slice);
