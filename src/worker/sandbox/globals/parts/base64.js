/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope): `atob`
 * and `btoa`, computed inside the sandbox (no bridge crossing per call), with Node 20's errors.
 */

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
let base64Values;
/** Base64 alphabet → value; '-' and '_' (base64url) only when 'url'. -1: not in the alphabet. */
function base64Value(c, url) {
  if (!base64Values) {
    base64Values = new Uint8ArrayCtor(128);
    for (let i = 0; i < 128; i++) base64Values[i] = 255;
    for (let i = 0; i < 64; i++) base64Values[charCodeAt(BASE64, i)] = i;
  }
  if (url && (c === 45 || c === 95)) return c === 45 ? 62 : 63;
  return c < 128 && base64Values[c] !== 255 ? base64Values[c] : -1;
}

/** Decodes base64 digits (already checked) to bytes; leftover bits are dropped. */
function base64Decode(text, url) {
  const out = new Uint8ArrayCtor(mathFloor((text.length * 3) / 4) + 3);
  let bits = 0,
    count = 0,
    written = 0;
  for (let i = 0; i < text.length; i++) {
    const value = base64Value(charCodeAt(text, i), url);
    if (value < 0) continue;
    bits = (bits << 6) | value;
    count += 6;
    if (count >= 8) {
      count -= 8;
      out[written++] = (bits >> count) & 0xff;
    }
  }
  return subarray(out, 0, written);
}

function base64Encode(bytes, url) {
  const length = typedArrayLength(bytes);
  const out = new Uint8ArrayCtor(mathFloor((length + 2) / 3) * 4);
  const alphabet = url
    ? 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    : BASE64;
  let written = 0;
  for (let i = 0; i < length; i += 3) {
    const n =
      (bytes[i] << 16) |
      ((i + 1 < length ? bytes[i + 1] : 0) << 8) |
      (i + 2 < length ? bytes[i + 2] : 0);
    out[written++] = charCodeAt(alphabet, n >> 18);
    out[written++] = charCodeAt(alphabet, (n >> 12) & 63);
    out[written++] = i + 1 < length ? charCodeAt(alphabet, (n >> 6) & 63) : 61;
    out[written++] = i + 2 < length ? charCodeAt(alphabet, n & 63) : 61;
  }
  if (url) while (written > 0 && out[written - 1] === 61) written--;
  return unitsToString(out, written);
}

function atob(input) {
  if (arguments.length === 0) throw missingArgs('"input" argument');
  const text = toStr(input);
  // Forgiving-base64 (https://infra.spec.whatwg.org/#forgiving-base64-decode), with Node's two
  // messages: a digit count that leaves one over is "not correctly encoded", the rest "Invalid".
  let digits = 0,
    padding = 0;
  for (let i = 0; i < text.length; i++) {
    const c = charCodeAt(text, i);
    if (isAsciiSpace(c)) continue;
    if (c === 61) {
      padding++;
      continue;
    }
    if (padding > 0 || base64Value(c, false) < 0)
      throw domException('Invalid character', 'InvalidCharacterError');
    digits++;
  }
  if (padding > 2) throw domException('Invalid character', 'InvalidCharacterError');
  if (digits % 4 === 1)
    throw domException(
      'The string to be decoded is not correctly encoded.',
      'InvalidCharacterError',
    );
  if (padding > 0 && (digits + padding) % 4 !== 0)
    throw domException('Invalid character', 'InvalidCharacterError');
  const bytes = base64Decode(text, false);
  return unitsToString(bytes, typedArrayLength(bytes));
}

function btoa(input) {
  if (arguments.length === 0) throw missingArgs('"input" argument');
  const text = toStr(input);
  const bytes = new Uint8ArrayCtor(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = charCodeAt(text, i);
    if (c > 0xff) throw domException('Invalid character', 'InvalidCharacterError');
    bytes[i] = c;
  }
  return base64Encode(bytes, false);
}
