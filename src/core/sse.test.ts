/**
 * Tests of the SSE parser, reader and writer: WHATWG edge cases one by one, then properties that
 * split serialized streams at arbitrary string and byte boundaries.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidInputError } from "./errors";
import { formatSse, formatSseComment, readSse, type SseEventInit, type SseMessage, SseParser } from "./sse";

function parseAll(chunks: string[], options?: { dispatchIncompleteOnEnd?: boolean }): SseMessage[] {
  const parser = new SseParser(options);
  const out: SseMessage[] = [];
  for (const chunk of chunks) out.push(...parser.push(chunk));
  out.push(...parser.end());
  return out;
}

function byteStream(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = chunks[i++];
      if (chunk === undefined) controller.close();
      else controller.enqueue(chunk);
    },
  });
}

async function collect(iterable: AsyncIterable<SseMessage>): Promise<SseMessage[]> {
  const out: SseMessage[] = [];
  for await (const message of iterable) out.push(message);
  return out;
}

describe("SseParser", () => {
  it("parses the Fiberline chunk shape", () => {
    expect(parseAll(['id: 7\nevent: text.delta\ndata: {"text":"hi"}\n\n'])).toEqual([
      { id: "7", event: "text.delta", data: '{"text":"hi"}' },
    ]);
  });

  it("accepts LF, CR and CRLF line ends, mixed", () => {
    expect(parseAll(["data: a\r\rdata: b\n\ndata: c\r\n\r\n"])).toEqual([
      { event: "message", data: "a" },
      { event: "message", data: "b" },
      { event: "message", data: "c" },
    ]);
  });

  it("treats a CRLF split across chunks as one line end", () => {
    // Were the "\n" read as a second line end, "data: a" would be dispatched alone.
    expect(parseAll(["data: a\r", "\ndata: b\r", "\n\r", "\n"])).toEqual([
      { event: "message", data: "a\nb" },
    ]);
  });

  it("ends a line at a CR that closes a chunk even when no LF follows", () => {
    expect(parseAll(["data: a\r", "\r", "data: b\n\n"])).toEqual([
      { event: "message", data: "a" },
      { event: "message", data: "b" },
    ]);
  });

  it("joins multi-line data with LF and strips exactly one leading space", () => {
    expect(parseAll(["data:one\ndata:  two\ndata\ndata: \n\n"])).toEqual([
      { event: "message", data: "one\n two\n\n" },
    ]);
  });

  it("ignores comments, unknown fields and blocks without data, and resets the event type", () => {
    expect(parseAll([": keep-alive\n\nevent: lonely\n\nfoo: bar\ndata: x\n\n"])).toEqual([
      { event: "message", data: "x" },
    ]);
  });

  it("strips one BOM at the start of the stream only, even when it comes alone", () => {
    expect(parseAll(["", "\uFEFF", "\uFEFFdata: x\n\n"])).toEqual([]);
    expect(parseAll(["\uFEFF", "data: x\n\n\uFEFFdata: y\n\n"])).toEqual([{ event: "message", data: "x" }]);
  });

  it("keeps the last event id across events, ignores ids with NUL and clears on an empty id", () => {
    const parser = new SseParser();
    const out = parser.push("id: 1\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\nid\ndata: d\n\n");
    expect(out).toEqual([
      { id: "1", event: "message", data: "a" },
      { id: "1", event: "message", data: "b" },
      { id: "1", event: "message", data: "c" },
      { event: "message", data: "d" },
    ]);
    expect(parser.lastEventId).toBe("");
  });

  it("takes only all-digit retry values", () => {
    const parser = new SseParser();
    expect(parser.push("retry: 1500\ndata: a\n\nretry: 15x\ndata: b\n\n")).toEqual([
      { event: "message", data: "a", retry: 1500 },
      { event: "message", data: "b" },
    ]);
    expect(parser.retry).toBe(1500);
  });

  it("discards an unterminated last event unless asked to dispatch it", () => {
    expect(parseAll(["data: complete\n\ndata: cut"])).toEqual([{ event: "message", data: "complete" }]);
    expect(parseAll(["data: complete\n\ndata: cut"], { dispatchIncompleteOnEnd: true })).toEqual([
      { event: "message", data: "complete" },
      { event: "message", data: "cut" },
    ]);
  });

  it("yields nothing for a field line that was never ended", () => {
    expect(parseAll(["data: x"])).toEqual([]);
  });

  it("keeps the extra fields it was asked for, per event, and ignores the rest", () => {
    const parser = new SseParser({ fields: ["at"] });
    expect(parser.push("id: 1\nat: 17\nother: x\ndata: a\n\nid: 2\ndata: b\n\n")).toEqual([
      { id: "1", event: "message", data: "a", fields: { at: "17" } },
      { id: "2", event: "message", data: "b" },
    ]);
    expect(parseAll(["at: 5\ndata: c\n\n"])).toEqual([{ event: "message", data: "c" }]);
  });
});

describe("formatSse", () => {
  it("writes id, event, retry and one data line per input line", () => {
    expect(formatSse({ id: 3, event: "text.delta", retry: 10, data: "a\r\nb\rc\nd" })).toBe(
      "id: 3\nevent: text.delta\nretry: 10\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
    );
    expect(formatSse({ data: "" })).toBe("data: \n\n");
  });

  it("rejects ids and event types that would break the framing", () => {
    expect(() => formatSse({ id: "a\nb", data: "" })).toThrow(InvalidInputError);
    expect(() => formatSse({ id: "a\0", data: "" })).toThrow(InvalidInputError);
    expect(() => formatSse({ event: "x\ry", data: "" })).toThrow(InvalidInputError);
    expect(() => formatSse({ retry: -1, data: "" })).toThrow(InvalidInputError);
    expect(() => formatSse({ fields: { "a:b": 1 }, data: "" })).toThrow(InvalidInputError);
    expect(() => formatSse({ fields: { data: 1 }, data: "" })).toThrow(InvalidInputError);
    expect(() => formatSse({ fields: { at: "1\n2" }, data: "" })).toThrow(InvalidInputError);
  });

  it("writes extra fields before the data lines", () => {
    expect(formatSse({ id: 4, event: "tick", fields: { at: 1700 }, data: "{}" })).toBe(
      "id: 4\nevent: tick\nat: 1700\ndata: {}\n\n",
    );
  });

  it("writes comments that readers skip", () => {
    expect(formatSseComment()).toBe(":\n\n");
    expect(parseAll([formatSseComment("ping\npong"), formatSse({ data: "x" })])).toEqual([
      { event: "message", data: "x" },
    ]);
  });
});

describe("readSse", () => {
  it("decodes multi-byte characters split across byte chunks and keeps a BOM for the parser", async () => {
    const bytes = new TextEncoder().encode("\uFEFFdata: h\u00e9llo \u{1F600}\r\n\r\n");
    const chunks = Array.from(bytes, (b) => Uint8Array.of(b));
    expect(await collect(readSse(byteStream(chunks)))).toEqual([
      { event: "message", data: "h\u00e9llo \u{1F600}" },
    ]);
  });

  it("throws the abort reason and cancels the body when the signal aborts", async () => {
    let cancelled: unknown;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("data: first\n\n"));
      },
      cancel(reason) {
        cancelled = reason ?? "cancelled";
      },
    });
    const controller = new AbortController();
    const seen: string[] = [];
    const run = (async () => {
      for await (const message of readSse(body, controller.signal)) {
        seen.push(message.data);
        controller.abort(new Error("stop"));
      }
    })();
    await expect(run).rejects.toThrow("stop");
    expect(seen).toEqual(["first"]);
    expect(cancelled).toBeDefined();
  });

  it("cancels the body when the consumer breaks out early", async () => {
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("data: 1\n\ndata: 2\n\n"));
      },
      cancel() {
        cancelled = true;
      },
    });
    for await (const message of readSse(body)) {
      expect(message.data).toBe("1");
      break;
    }
    expect(cancelled).toBe(true);
  });
});

// Units biased towards the characters that matter to the framing.
const framingUnit = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom("\r", "\n", "\r\n", ":", " ", "\uFEFF", "\0", "data: ", "\u00e9", "\u{1F600}"),
  },
);
const fieldValue = fc.string({ unit: framingUnit, maxLength: 12 }).map((s) => s.replace(/[\r\n\0]/g, ""));
const eventInit: fc.Arbitrary<SseEventInit> = fc.record(
  {
    id: fieldValue,
    event: fieldValue,
    data: fc.string({ unit: framingUnit, maxLength: 30 }),
    retry: fc.nat({ max: 100_000 }),
  },
  { requiredKeys: ["data"] },
);
const streamCase = fc.record({
  events: fc.array(eventInit, { maxLength: 8 }),
  bom: fc.boolean(),
  eol: fc.constantFrom("\n", "\r", "\r\n"),
  comments: fc.array(fc.nat(), { maxLength: 3 }),
  cuts: fc.array(fc.nat(), { maxLength: 12 }),
});

function serialize(events: SseEventInit[], bom: boolean, eol: string, comments: number[]): string {
  const parts = events.map((e) => formatSse(e));
  for (const at of comments) parts.splice(at % (parts.length + 1), 0, formatSseComment("noise: not a field"));
  // formatSse writes LF; servers may use CR or CRLF, and field values hold no line breaks.
  return (bom ? "\uFEFF" : "") + parts.join("").replace(/\n/g, eol);
}

function expected(events: SseEventInit[]): SseMessage[] {
  let lastId = "";
  return events.map((e) => {
    if (e.id !== undefined) lastId = String(e.id);
    const message: SseMessage = {
      event: e.event === undefined || e.event === "" ? "message" : e.event,
      data: e.data.replace(/\r\n|\r|\n/g, "\n"),
    };
    if (lastId !== "") message.id = lastId;
    if (e.retry !== undefined) message.retry = e.retry;
    return message;
  });
}

function splitAt<T extends { length: number; slice(a: number, b?: number): T }>(
  whole: T,
  cuts: number[],
): T[] {
  const points = [...new Set(cuts.map((c) => c % (whole.length + 1)))].sort((a, b) => a - b);
  const pieces: T[] = [];
  let from = 0;
  for (const p of points) {
    pieces.push(whole.slice(from, p));
    from = p;
  }
  pieces.push(whole.slice(from));
  return pieces;
}

describe("SSE round trip properties", () => {
  it("parses any serialized event list back identically, however the text is split", () => {
    fc.assert(
      fc.property(streamCase, ({ events, bom, eol, comments, cuts }) => {
        const text = serialize(events, bom, eol, comments);
        expect(parseAll(splitAt(text, cuts))).toEqual(expected(events));
      }),
      { numRuns: 500 },
    );
  });

  it("reads any serialized event list back identically, however the bytes are split", async () => {
    await fc.assert(
      fc.asyncProperty(streamCase, async ({ events, bom, eol, comments, cuts }) => {
        const bytes = new TextEncoder().encode(serialize(events, bom, eol, comments));
        expect(await collect(readSse(byteStream(splitAt(bytes, cuts))))).toEqual(expected(events));
      }),
      { numRuns: 300 },
    );
  });
});
