/**
 * A Server-Sent Events parser (the WHATWG HTML "event stream interpretation", without `id`,
 * `retry` and reconnection): text in, in chunks cut anywhere; events out. Lines end with CRLF,
 * LF or CR; a blank line dispatches the event gathered so far when it has data; a line starting
 * with `:` is a comment; `event: x` sets the type, each `data: x` adds a line to the data (one
 * space after the colon dropped); other fields are ignored. Pure: no I/O.
 */

export interface SseEvent {
  /** The `event` field; `message` when the event had none. */
  type: string;
  /** The `data` lines, joined with `\n`. */
  data: string;
}

export class SseParser {
  #buffer = '';
  /** The last chunk ended with CR: an LF starting the next one belongs to that line end. */
  #afterCr = false;
  #type = '';
  #data: string[] = [];

  /** Feeds a chunk of the stream's text; returns the events it completed, in order. */
  push(chunk: string): SseEvent[] {
    let text = chunk;
    if (this.#afterCr && text.startsWith('\n')) text = text.slice(1);
    this.#afterCr = false;
    this.#buffer += text;
    const events: SseEvent[] = [];
    for (;;) {
      const end = this.#buffer.search(/[\r\n]/);
      if (end < 0) break;
      const line = this.#buffer.slice(0, end);
      let next = end + 1;
      if (this.#buffer[end] === '\r') {
        if (end + 1 === this.#buffer.length) this.#afterCr = true;
        else if (this.#buffer[end + 1] === '\n') next++;
      }
      this.#buffer = this.#buffer.slice(next);
      const event = this.#line(line);
      if (event) events.push(event);
    }
    return events;
  }

  #line(line: string): SseEvent | undefined {
    if (line === '') {
      const event: SseEvent | undefined =
        this.#data.length === 0
          ? undefined
          : { type: this.#type || 'message', data: this.#data.join('\n') };
      this.#type = '';
      this.#data = [];
      return event;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#type = value;
    else if (field === 'data') this.#data.push(value);
    return undefined;
  }
}
