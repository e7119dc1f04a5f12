/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope):
 * `TextEncoder` and `TextDecoder`, computed inside the sandbox (short spec algorithms; no bridge
 * crossing per call). base64.js follows it.
 *
 * TextDecoder knows the WHATWG labels of utf-8, utf-16le, utf-16be and windows-1252, as Node 20
 * names them, and reproduces Node 20's windows-1252 quirk: a decoder that has never been given
 * `{ stream: true }` maps every byte to the same code point (ISO-8859-1, Node's fast path); once
 * it has streamed, it uses the real windows-1252 table for 0x80–0x9F (ICU). Other labels are
 * refused with Node's RangeError (ERR_ENCODING_NOT_SUPPORTED).
 */

let utf8Read = 0;
/** Writes the UTF-8 of 'text' into 'out' until 'capacity'; returns bytes written (utf8Read: units read). */
function utf8Write(text, out, capacity) {
  const length = text.length;
  let read = 0;
  let written = 0;
  while (read < length) {
    let c = charCodeAt(text, read);
    let units = 1;
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = c <= 0xdbff && read + 1 < length ? charCodeAt(text, read + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        units = 2;
      } else c = 0xfffd;
    }
    if (c < 0x80) {
      if (written + 1 > capacity) break;
      out[written++] = c;
    } else if (c < 0x800) {
      if (written + 2 > capacity) break;
      out[written++] = 0xc0 | (c >> 6);
      out[written++] = 0x80 | (c & 0x3f);
    } else if (c < 0x10000) {
      if (written + 3 > capacity) break;
      out[written++] = 0xe0 | (c >> 12);
      out[written++] = 0x80 | ((c >> 6) & 0x3f);
      out[written++] = 0x80 | (c & 0x3f);
    } else {
      if (written + 4 > capacity) break;
      out[written++] = 0xf0 | (c >> 18);
      out[written++] = 0x80 | ((c >> 12) & 0x3f);
      out[written++] = 0x80 | ((c >> 6) & 0x3f);
      out[written++] = 0x80 | (c & 0x3f);
    }
    read += units;
  }
  utf8Read = read;
  return written;
}

function utf8Size(text) {
  const length = text.length;
  let size = 0;
  for (let i = 0; i < length; i++) {
    const c = charCodeAt(text, i);
    if (c < 0x80) size += 1;
    else if (c < 0x800) size += 2;
    else if (
      c >= 0xd800 &&
      c <= 0xdbff &&
      i + 1 < length &&
      (charCodeAt(text, i + 1) & 0xfc00) === 0xdc00
    ) {
      size += 4;
      i++;
    } else size += 3;
  }
  return size;
}

function utf8Encode(text) {
  const size = utf8Size(text);
  const out = new Uint8ArrayCtor(size);
  utf8Write(text, out, size);
  return out;
}

let TextEncoderClass;
function getTextEncoder() {
  if (TextEncoderClass) return TextEncoderClass;
  let check;
  class TextEncoder {
    #brand = true;
    get encoding() {
      check(this);
      return 'utf-8';
    }
    encode(input = '') {
      check(this);
      return utf8Encode(toStr(input));
    }
    encodeInto(src, dest) {
      check(this);
      if (typeof src !== 'string') throw invalidArgType('src', 'of type string', src);
      if (!dest || typedArrayTag(dest) !== 'Uint8Array')
        throw invalidArgType('dest', 'an instance of Uint8Array', dest);
      const written = utf8Write(src, dest, typedArrayLength(dest));
      return { read: utf8Read, written: written };
    }
    static {
      check = (self) => {
        if (self === null || typeof self !== 'object' || !(#brand in self))
          throw nodeError(
            TypeErrorCtor,
            'ERR_INVALID_THIS',
            'Value of "this" must be of type TextEncoder',
          );
      };
    }
  }
  defineProperty(TextEncoder.prototype, SymbolToStringTag, {
    value: 'TextEncoder',
    configurable: true,
  });
  TextEncoderClass = TextEncoder;
  return TextEncoder;
}

const LABELS = {
  __proto__: null,
  'unicode-1-1-utf-8': 'utf-8',
  unicode11utf8: 'utf-8',
  unicode20utf8: 'utf-8',
  'utf-8': 'utf-8',
  utf8: 'utf-8',
  'x-unicode20utf8': 'utf-8',
  csunicode: 'utf-16le',
  'iso-10646-ucs-2': 'utf-16le',
  'ucs-2': 'utf-16le',
  unicode: 'utf-16le',
  unicodefeff: 'utf-16le',
  'utf-16': 'utf-16le',
  'utf-16le': 'utf-16le',
  unicodefffe: 'utf-16be',
  'utf-16be': 'utf-16be',
  'ansi_x3.4-1968': 'windows-1252',
  ascii: 'windows-1252',
  cp1252: 'windows-1252',
  cp819: 'windows-1252',
  csisolatin1: 'windows-1252',
  ibm819: 'windows-1252',
  'iso-8859-1': 'windows-1252',
  'iso-ir-100': 'windows-1252',
  'iso8859-1': 'windows-1252',
  iso88591: 'windows-1252',
  'iso_8859-1': 'windows-1252',
  'iso_8859-1:1987': 'windows-1252',
  l1: 'windows-1252',
  latin1: 'windows-1252',
  'us-ascii': 'windows-1252',
  'windows-1252': 'windows-1252',
  'x-cp1252': 'windows-1252',
};
// windows-1252 0x80–0x9F (bytes outside this range map to themselves).
const CP1252 = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152,
  0x8d, 0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122,
  0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];

function isAsciiSpace(c) {
  return c === 9 || c === 10 || c === 12 || c === 13 || c === 32;
}
function trimAscii(text) {
  let start = 0;
  let end = text.length;
  while (start < end && isAsciiSpace(charCodeAt(text, start))) start++;
  while (end > start && isAsciiSpace(charCodeAt(text, end - 1))) end--;
  return stringSlice(text, start, end);
}

let TextDecoderClass;
function getTextDecoder() {
  if (TextDecoderClass) return TextDecoderClass;
  let check;
  const EMPTY = new Uint8ArrayCtor(0);
  class TextDecoder {
    #encoding;
    #fatal;
    #ignoreBOM;
    #latin1Fast = true;
    // Streaming state: BOM seen; UTF-8 sequence; UTF-16 lead byte and lead surrogate.
    #bomSeen = false;
    #needed = 0;
    #seen = 0;
    #codePoint = 0;
    #lower = 0x80;
    #upper = 0xbf;
    #leadByte = -1;
    #leadSurrogate = -1;
    constructor(encoding = 'utf-8', options = undefined) {
      encoding = toStr(encoding);
      if (
        options !== undefined &&
        options !== null &&
        typeof options !== 'object' &&
        typeof options !== 'function'
      ) {
        throw invalidArgType('options', 'of type object', options);
      }
      const name = LABELS[toLowerCase(trimAscii(encoding))];
      if (name === undefined)
        throw nodeError(
          RangeErrorCtor,
          'ERR_ENCODING_NOT_SUPPORTED',
          'The "' + encoding + '" encoding is not supported',
        );
      this.#encoding = name;
      this.#fatal = options != null && !!options.fatal;
      this.#ignoreBOM = options != null && !!options.ignoreBOM;
    }
    get encoding() {
      check(this);
      return this.#encoding;
    }
    get fatal() {
      check(this);
      return this.#fatal;
    }
    get ignoreBOM() {
      check(this);
      return this.#ignoreBOM;
    }
    decode(input = undefined, options = undefined) {
      check(this);
      const stream = options != null && !!options.stream;
      const bytes = input === undefined ? EMPTY : bytesOf(input);
      if (bytes === undefined) {
        throw nodeError(
          TypeErrorCtor,
          'ERR_INVALID_ARG_TYPE',
          'The "list" argument must be an instance of SharedArrayBuffer, ArrayBuffer or ArrayBufferView.',
        );
      }
      if (this.#encoding === 'windows-1252') {
        if (stream) this.#latin1Fast = false;
        return this.#latin1(bytes);
      }
      const units = new Uint16ArrayCtor(typedArrayLength(bytes) + 2);
      const count =
        this.#encoding === 'utf-8'
          ? this.#utf8(bytes, units, !stream)
          : this.#utf16(bytes, units, !stream);
      let start = 0;
      if (!this.#ignoreBOM && !this.#bomSeen && count > 0) {
        if (units[0] === 0xfeff) start = 1;
        this.#bomSeen = true;
      }
      if (!stream) this.#bomSeen = false;
      return unitsToString(subarray(units, start), count - start);
    }
    #fail() {
      this.#needed = this.#seen = this.#codePoint = 0;
      this.#lower = 0x80;
      this.#upper = 0xbf;
      this.#leadByte = this.#leadSurrogate = -1;
      this.#bomSeen = false;
      throw nodeError(
        TypeErrorCtor,
        'ERR_ENCODING_INVALID_ENCODED_DATA',
        'The encoded data was not valid for encoding ' + this.#encoding,
      );
    }
    #latin1(bytes) {
      const length = typedArrayLength(bytes);
      if (this.#latin1Fast) return unitsToString(bytes, length);
      const units = new Uint16ArrayCtor(length);
      for (let i = 0; i < length; i++) {
        const b = bytes[i];
        units[i] = b >= 0x80 && b <= 0x9f ? CP1252[b - 0x80] : b;
      }
      return unitsToString(units, length);
    }
    // The WHATWG UTF-8 decoder (https://encoding.spec.whatwg.org/#utf-8-decoder).
    #utf8(bytes, units, flush) {
      const length = typedArrayLength(bytes);
      let needed = this.#needed,
        seen = this.#seen,
        codePoint = this.#codePoint,
        lower = this.#lower,
        upper = this.#upper;
      let count = 0;
      for (let i = 0; i < length; i++) {
        const b = bytes[i];
        if (needed === 0) {
          if (b < 0x80) {
            units[count++] = b;
            continue;
          }
          if (b >= 0xc2 && b <= 0xdf) {
            needed = 1;
            codePoint = b & 0x1f;
          } else if (b >= 0xe0 && b <= 0xef) {
            if (b === 0xe0) lower = 0xa0;
            if (b === 0xed) upper = 0x9f;
            needed = 2;
            codePoint = b & 0xf;
          } else if (b >= 0xf0 && b <= 0xf4) {
            if (b === 0xf0) lower = 0x90;
            if (b === 0xf4) upper = 0x8f;
            needed = 3;
            codePoint = b & 0x7;
          } else {
            if (this.#fatal) this.#fail();
            units[count++] = 0xfffd;
          }
          continue;
        }
        if (b < lower || b > upper) {
          needed = seen = codePoint = 0;
          lower = 0x80;
          upper = 0xbf;
          if (this.#fatal) this.#fail();
          units[count++] = 0xfffd;
          i--; // the byte starts over
          continue;
        }
        lower = 0x80;
        upper = 0xbf;
        codePoint = (codePoint << 6) | (b & 0x3f);
        if (++seen !== needed) continue;
        if (codePoint > 0xffff) {
          codePoint -= 0x10000;
          units[count++] = 0xd800 + (codePoint >> 10);
          units[count++] = 0xdc00 + (codePoint & 0x3ff);
        } else units[count++] = codePoint;
        needed = seen = codePoint = 0;
      }
      if (flush && needed !== 0) {
        needed = seen = codePoint = 0;
        lower = 0x80;
        upper = 0xbf;
        if (this.#fatal) this.#fail();
        units[count++] = 0xfffd;
      }
      this.#needed = needed;
      this.#seen = seen;
      this.#codePoint = codePoint;
      this.#lower = lower;
      this.#upper = upper;
      return count;
    }
    // The WHATWG UTF-16 decoder (https://encoding.spec.whatwg.org/#shared-utf-16-decoder).
    #utf16(bytes, units, flush) {
      const length = typedArrayLength(bytes);
      const bigEndian = this.#encoding === 'utf-16be';
      let leadByte = this.#leadByte,
        leadSurrogate = this.#leadSurrogate;
      let count = 0;
      for (let i = 0; i < length; i++) {
        const b = bytes[i];
        if (leadByte < 0) {
          leadByte = b;
          continue;
        }
        const unit = bigEndian ? (leadByte << 8) + b : leadByte + (b << 8);
        leadByte = -1;
        if (leadSurrogate >= 0) {
          const lead = leadSurrogate;
          leadSurrogate = -1;
          if (unit >= 0xdc00 && unit <= 0xdfff) {
            units[count++] = lead;
            units[count++] = unit;
            continue;
          }
          if (this.#fatal) this.#fail();
          units[count++] = 0xfffd;
        }
        if (unit >= 0xd800 && unit <= 0xdbff) {
          leadSurrogate = unit;
          continue;
        }
        if (unit >= 0xdc00 && unit <= 0xdfff) {
          if (this.#fatal) this.#fail();
          units[count++] = 0xfffd;
          continue;
        }
        units[count++] = unit;
      }
      if (flush && (leadByte >= 0 || leadSurrogate >= 0)) {
        leadByte = leadSurrogate = -1;
        if (this.#fatal) this.#fail();
        units[count++] = 0xfffd;
      }
      this.#leadByte = leadByte;
      this.#leadSurrogate = leadSurrogate;
      return count;
    }
    static {
      check = (self) => {
        if (self === null || typeof self !== 'object' || !(#encoding in self))
          throw nodeError(
            TypeErrorCtor,
            'ERR_INVALID_THIS',
            'Value of "this" must be of type TextDecoder',
          );
      };
    }
  }
  defineProperty(TextDecoder.prototype, SymbolToStringTag, {
    value: 'TextDecoder',
    configurable: true,
  });
  TextDecoderClass = TextDecoder;
  return TextDecoder;
}
