/**
 * Server-Sent Events, both directions, with no platform globals beyond `TextDecoder`.
 *
 * `SseParser` is an incremental parser that follows the WHATWG "event stream interpretation"
 * rules; `readSse` drives it from a byte stream; `formatSse` writes one event. The OpenAI
 * provider (`src/agent/openai.ts`), the Service Worker host's event stream and the page client's
 * resumable reader all speak through this file.
 */

import { InvalidInputError } from "./errors";

/** One dispatched event, as the WHATWG algorithm hands it to `EventSource` listeners. */
export interface SseMessage {
  /**
   * The last event ID at dispatch time. As in `EventSource.lastEventId` it persists from earlier
   * events until an `id` field changes it; absent while it is the empty string.
   */
  id?: string;
  /** The event type; `"message"` when the event had no `event` field. */
  event: string;
  /** The `data` lines joined with `"\n"`. */
  data: string;
  /** The reconnection time in ms, when this event's block carried a valid `retry` field. */
  retry?: number;
  /**
   * Extra fields this event's block carried, for the names listed in `SseParserOptions.fields`
   * (the last value wins). `EventSource` ignores such fields; Fiberline's stream uses `at`.
   */
  fields?: Record<string, string>;
}

/** Options of {@link SseParser}. */
export interface SseParserOptions {
  /**
   * Dispatch an event that the stream left unterminated (no blank line after it) when `end()` is
   * called. The spec discards it (the default); lenient clients such as the OpenAI provider keep
   * it, because some servers close right after their last `data:` line.
   */
  dispatchIncompleteOnEnd?: boolean;
  /**
   * Names of non-standard fields to keep in `SseMessage.fields` instead of ignoring them (the
   * spec ignores unknown fields, so servers may add metadata lines that browsers skip).
   */
  fields?: readonly string[];
}

const STANDARD_FIELDS: ReadonlySet<string> = new Set(["data", "event", "id", "retry"]);
const LF = 10;

/**
 * Incremental WHATWG event-stream parser: feed it text in chunks of any size, split anywhere
 * (even between the `\r` and `\n` of a CRLF), and it returns the events each chunk completes.
 *
 * Handles CRLF, CR and LF line ends, a leading BOM, comments (`:` lines), fields without a colon,
 * multi-line `data`, `id` persistence (an `id` containing NUL is ignored) and numeric `retry`.
 *
 * @example
 * const parser = new SseParser();
 * for (const text of chunks) for (const ev of parser.push(text)) handle(ev);
 * for (const ev of parser.end()) handle(ev);
 */
export class SseParser {
  readonly #dispatchIncompleteOnEnd: boolean;
  readonly #keptFields: ReadonlySet<string>;
  #blockFields: Record<string, string> | undefined;
  /** Text of the line being read, not yet terminated. */
  #partial = "";
  /** The previous chunk ended in `\r`: a `\n` opening the next chunk belongs to that line end. */
  #skipLeadingLF = false;
  #sawFirstChar = false;
  #data: string[] = [];
  #eventType = "";
  #lastEventId = "";
  #retry: number | undefined;
  #blockRetry: number | undefined;

  constructor(options: SseParserOptions = {}) {
    this.#dispatchIncompleteOnEnd = options.dispatchIncompleteOnEnd ?? false;
    this.#keptFields = new Set(options.fields ?? []);
  }

  /** The last event ID buffer (what a reconnecting client sends as `Last-Event-ID`). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** The reconnection time the stream last asked for with a `retry` field, if any. */
  get retry(): number | undefined {
    return this.#retry;
  }

  /** Feeds the next piece of decoded text and returns the events it completed, in order. */
  push(text: string): SseMessage[] {
    const out: SseMessage[] = [];
    if (text.length === 0) return out;
    let start = 0;
    if (!this.#sawFirstChar) {
      this.#sawFirstChar = true;
      if (text.charCodeAt(0) === 0xfeff) start = 1;
    }
    if (this.#skipLeadingLF) {
      this.#skipLeadingLF = false;
      if (text.charCodeAt(start) === LF) start += 1;
    }
    // The regex engine finds the line ends (CRLF, CR or LF) faster than a loop over every char.
    const ends = /\r\n|\r|\n/g;
    ends.lastIndex = start;
    for (let match = ends.exec(text); match !== null; match = ends.exec(text)) {
      const line = this.#partial + text.slice(start, match.index);
      this.#partial = "";
      this.#processLine(line, out);
      start = ends.lastIndex;
      // A CR ending this piece may be the first half of a CRLF split across pieces.
      if (start === text.length && match[0] === "\r") this.#skipLeadingLF = true;
    }
    if (start < text.length) this.#partial += text.slice(start);
    return out;
  }

  /**
   * Marks the end of the stream. Per the spec an unterminated last event is discarded; with
   * `dispatchIncompleteOnEnd` it is dispatched instead. The parser can be reused afterwards.
   */
  end(): SseMessage[] {
    const out: SseMessage[] = [];
    if (this.#dispatchIncompleteOnEnd) {
      if (this.#partial.length > 0) this.#processLine(this.#partial, out);
      this.#dispatch(out);
    }
    this.#partial = "";
    this.#skipLeadingLF = false;
    this.#sawFirstChar = false;
    this.#data = [];
    this.#eventType = "";
    this.#blockRetry = undefined;
    this.#blockFields = undefined;
    return out;
  }

  #processLine(line: string, out: SseMessage[]): void {
    if (line.length === 0) {
      this.#dispatch(out);
      return;
    }
    if (line.charCodeAt(0) === 58 /* ":" */) return;
    const colon = line.indexOf(":");
    let field: string;
    let value: string;
    if (colon === -1) {
      field = line;
      value = "";
    } else {
      field = line.slice(0, colon);
      value = line.charCodeAt(colon + 1) === 32 /* " " */ ? line.slice(colon + 2) : line.slice(colon + 1);
    }
    switch (field) {
      case "data":
        this.#data.push(value);
        break;
      case "event":
        this.#eventType = value;
        break;
      case "id":
        if (!value.includes("\0")) this.#lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) {
          this.#retry = Number.parseInt(value, 10);
          this.#blockRetry = this.#retry;
        }
        break;
      default:
        // Unknown fields are ignored, as the spec requires, unless the caller asked to keep them.
        if (this.#keptFields.has(field)) {
          this.#blockFields ??= {};
          this.#blockFields[field] = value;
        }
        break;
    }
  }

  #dispatch(out: SseMessage[]): void {
    const hasData = this.#data.length > 0;
    if (hasData) {
      const message: SseMessage = {
        event: this.#eventType === "" ? "message" : this.#eventType,
        data: this.#data.join("\n"),
      };
      if (this.#lastEventId !== "") message.id = this.#lastEventId;
      if (this.#blockRetry !== undefined) message.retry = this.#blockRetry;
      if (this.#blockFields !== undefined) message.fields = this.#blockFields;
      out.push(message);
    }
    // A block without data lines dispatches nothing but still resets the event type.
    this.#data = [];
    this.#eventType = "";
    this.#blockRetry = undefined;
    this.#blockFields = undefined;
  }
}

/**
 * Reads a UTF-8 event stream body and yields its events as they complete.
 *
 * Decodes with `TextDecoder` in streaming mode (a multi-byte character split across chunks is
 * kept whole) and leaves the BOM to the parser. Breaking out of the loop cancels the body.
 *
 * Failure semantics: when `signal` aborts, the body is cancelled and the generator throws
 * `signal.reason`; a body that errors rethrows that error; an event left unterminated at the end
 * of the stream is discarded, as `EventSource` does. `options` are passed to the parser.
 *
 * @example
 * const res = await fetch(url, { headers: { accept: "text/event-stream" } });
 * for await (const ev of readSse(res.body!, signal)) console.log(ev.id, ev.event, ev.data);
 */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
  options?: SseParserOptions,
): AsyncGenerator<SseMessage, void, undefined> {
  signal?.throwIfAborted();
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  const parser = new SseParser(options);
  let finished = false;
  const onAbort = (): void => {
    reader.cancel(signal?.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        finished = true;
        if (signal?.aborted) throw signal.reason;
        throw error;
      }
      if (signal?.aborted) throw signal.reason;
      if (chunk.done) {
        finished = true;
        yield* parser.push(decoder.decode());
        yield* parser.end();
        return;
      }
      yield* parser.push(decoder.decode(chunk.value, { stream: true }));
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (!finished) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** One event to write with {@link formatSse}. */
export interface SseEventInit {
  /** Written as the `id` field; must not contain CR, LF or NUL. */
  id?: string | number;
  /** Written as the `event` field; must not contain CR or LF. */
  event?: string;
  /** Split on CRLF, CR and LF into one `data` line each. */
  data: string;
  /** Written as the `retry` field (a non-negative integer of milliseconds). */
  retry?: number;
  /**
   * Extra fields written before the data lines (names without `:`, CR, LF and not one of the
   * standard four; values without CR or LF). Browsers ignore them; see `SseParserOptions.fields`.
   */
  fields?: Record<string, string | number>;
}

/**
 * Serializes one event, ending in the blank line that dispatches it.
 *
 * @example
 * formatSse({ id: 3, event: "text.delta", data: JSON.stringify({ text: "hi" }) });
 * // "id: 3\nevent: text.delta\ndata: {\"text\":\"hi\"}\n\n"
 */
export function formatSse(init: SseEventInit): string {
  let out = "";
  if (init.id !== undefined) {
    const id = String(init.id);
    if (/[\r\n\0]/.test(id))
      throw new InvalidInputError(
        "invalid_argument",
        `An SSE id cannot contain CR, LF or NUL (got ${JSON.stringify(id)}).`,
      );
    out += `id: ${id}\n`;
  }
  if (init.event !== undefined) {
    if (/[\r\n]/.test(init.event)) {
      throw new InvalidInputError(
        "invalid_argument",
        `An SSE event type cannot contain CR or LF (got ${JSON.stringify(init.event)}).`,
      );
    }
    out += `event: ${init.event}\n`;
  }
  if (init.retry !== undefined) {
    if (!Number.isSafeInteger(init.retry) || init.retry < 0) {
      throw new InvalidInputError(
        "invalid_argument",
        `An SSE retry must be a non-negative integer of milliseconds (got ${init.retry}).`,
      );
    }
    out += `retry: ${init.retry}\n`;
  }
  for (const [name, raw] of Object.entries(init.fields ?? {})) {
    const value = String(raw);
    if (!/^[^:\r\n]+$/.test(name) || STANDARD_FIELDS.has(name) || /[\r\n]/.test(value)) {
      throw new InvalidInputError(
        "invalid_argument",
        `An extra SSE field needs a name without ":", CR or LF other than data/event/id/retry, and a value without CR or LF (got ${JSON.stringify(name)}: ${JSON.stringify(value)}).`,
      );
    }
    out += `${name}: ${value}\n`;
  }
  for (const line of init.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** Serializes a comment line (ignored by readers; useful as a keep-alive heartbeat). */
export function formatSseComment(text = ""): string {
  return `${text
    .split(/\r\n|\r|\n/)
    .map((line) => `:${line === "" ? "" : ` ${line}`}`)
    .join("\n")}\n\n`;
}
