/**
 * Test helpers for the real provider streams in `../shared/interop-fixtures/chat-streams` (issue
 * 15): where they are, their manifest, the HTTP body each stands for, the ways of cutting it, and
 * a local server that plays recordings in order per path and keeps the requests it got. The
 * recordings are public data this repository does not copy: they are read at test time, and
 * `present` is false when the folder is absent. Used by `interop.test.ts` and
 * `interop-agent.test.ts`; not exported from `fiberline/agent`.
 */

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** The recordings' folder, next to the repository. */
export const FIXTURES = fileURLToPath(
  new URL("../shared/interop-fixtures/chat-streams/", `file://${repoRoot}`),
);

/** Whether the recordings are there. */
export const present = existsSync(`${FIXTURES}manifest.json`);

/** One recording as the manifest lists it. */
export interface ManifestEntry {
  file: string;
  framing: "raw-sse" | "json-lines";
}

/** The manifest (empty when the recordings are absent). */
export const manifest: ManifestEntry[] = present
  ? (JSON.parse(readFileSync(`${FIXTURES}manifest.json`, "utf8")) as ManifestEntry[])
  : [];

/** The manifest entry of `file`; throws when it is not listed. */
export function recording(file: string): ManifestEntry {
  const entry = manifest.find((e) => e.file === file);
  if (entry === undefined) throw new Error(`${file} is missing from ${FIXTURES}manifest.json`);
  return entry;
}

/** Recordings whose capture ends without `[DONE]`: served that way, the server closing after the finish chunk. */
const NO_DONE = new Set(["llama-server-qwen3-coder-text-and-tool-call.jsonl"]);

/** The HTTP body a recording stands for: raw SSE as stored, JSON lines as `data:` events. */
export function bodyOf(entry: ManifestEntry): string {
  const stored = readFileSync(`${FIXTURES}${entry.file}`, "utf8");
  if (entry.framing === "raw-sse") return stored;
  const lines = stored.split(/\r?\n/).filter((line) => line.trim() !== "");
  const done = NO_DONE.has(entry.file) ? "" : "data: [DONE]\n\n";
  return `${lines.map((line) => `data: ${line}\n\n`).join("")}${done}`;
}

/** A seeded PRNG (mulberry32), so a failing split can be replayed from the seed in the test name. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cuts `bytes` at random offsets (pieces of 1 to 48 bytes) plus every offset in `extra`. */
function split(bytes: Uint8Array, seed: number, extra: readonly number[] = []): Uint8Array[] {
  const random = prng(seed);
  const cuts = new Set(extra);
  for (let at = 0; at < bytes.length; ) {
    at += 1 + Math.floor(random() * 48);
    cuts.add(at);
  }
  const sorted = [...cuts].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const at of [...sorted, bytes.length]) {
    pieces.push(bytes.subarray(from, at));
    from = at;
  }
  return pieces;
}

/** Offsets one byte into every multi-byte UTF-8 character: a cut there splits the character. */
function insideCharacters(bytes: Uint8Array): number[] {
  const cuts: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] ?? 0;
    if (byte >= 0xc0) cuts.push(i + 1);
  }
  return cuts;
}

const encoder = new TextEncoder();

/** The ways a recording is served: each must decode the same. */
export const VARIANTS: Record<string, (body: string, seed: number) => Uint8Array[]> = {
  whole: (body) => [encoder.encode(body)],
  "random chunks": (body, seed) => split(encoder.encode(body), seed),
  "CRLF line ends, random chunks": (body, seed) =>
    split(encoder.encode(body.replace(/\r\n|\r|\n/g, "\r\n")), seed + 1),
  "UTF-8 split mid-character": (body, seed) => {
    const bytes = encoder.encode(body);
    return split(bytes, seed + 2, insideCharacters(bytes));
  },
};

/** `file`'s body served as `variant`. */
export function served(file: string, variant: string, seed = seedOf(file)): Uint8Array[] {
  const make = VARIANTS[variant];
  if (make === undefined) throw new Error(`unknown variant ${variant}`);
  return make(bodyOf(recording(file)), seed);
}

/** A long text, checked by its start, its length in code points and the first 16 hex of its SHA-256. */
export interface Digest {
  start: string;
  chars: number;
  sha256: string;
}

/** `text` as a {@link Digest}. */
export function digestOf(text: string): Digest {
  const points = [...text];
  return {
    start: points.slice(0, 30).join(""),
    chars: points.length,
    sha256: createHash("sha256").update(text, "utf8").digest("hex").slice(0, 16),
  };
}

/** A stable seed per recording. */
export function seedOf(file: string): number {
  return createHash("sha256").update(file).digest().readUInt32BE(0);
}

/** A local Chat Completions endpoint that plays recordings. */
export interface RecordedServer {
  /**
   * Registers recordings under a fresh path and returns the provider's base URL for it: the n-th
   * request to it gets `responses[n]`, cut in the given pieces (a 404 once they are used up).
   */
  route(name: string, ...responses: Uint8Array[][]): string;
  /** The JSON bodies of the requests a base URL from `route` got, in order. */
  requests(baseUrl: string): unknown[];
  close(): Promise<void>;
}

/** Starts a {@link RecordedServer} on a free port of 127.0.0.1. */
export async function startRecordedServer(): Promise<RecordedServer> {
  const routes = new Map<string, { responses: Uint8Array[][]; bodies: unknown[] }>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const route = routes.get(req.url ?? "");
      const pieces = route?.responses[route.bodies.length];
      route?.bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8") || "null"));
      if (pieces === undefined) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `no recording left at ${req.url}` } }));
        return;
      }
      void play(res, pieces);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    route(name, ...responses) {
      const path = `/${routes.size}/${encodeURIComponent(name)}/v1`;
      routes.set(`${path}/chat/completions`, { responses, bodies: [] });
      return `${origin}${path}`;
    },
    requests(baseUrl) {
      return routes.get(`${new URL(baseUrl).pathname}/chat/completions`)?.bodies ?? [];
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Writes each piece as its own write, so the client sees the cuts. */
async function play(res: http.ServerResponse, pieces: readonly Uint8Array[]): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  for (const piece of pieces) {
    res.write(piece);
    await new Promise((resolve) => setImmediate(resolve));
  }
  res.end();
}
