/**
 * A tiny static file server for the built bench (`bench/dist`) on a fixed localhost port: the
 * origin (and so the IndexedDB databases and the Service Worker registration) must stay the same
 * across a browser relaunch.
 */

import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".css": "text/css",
};

/**
 * Serves `root` on `127.0.0.1:port`; resolves with a `close()` function. `handler`, when given,
 * sees each request first and may answer it (B9's mock model), else calls `next()`.
 */
export function serveStatic(root, port, handler) {
  const server = createServer((request, response) => {
    if (handler) handler(request, response, () => serveFile(root, request, response));
    else serveFile(root, request, response);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () =>
      resolve({ close: () => new Promise((done) => server.close(() => done())) }),
    );
  });
}

function serveFile(root, request, response) {
  const url = new URL(request.url ?? "/", "http://localhost");
  const path = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, "");
  const file = join(root, path.endsWith("/") ? `${path}index.html` : path);
  let size;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw new Error("not a file");
    size = stat.size;
  } catch {
    response.writeHead(404, { "content-type": "text/plain" }).end("not found");
    return;
  }
  response.writeHead(200, {
    "content-type": TYPES[extname(file)] ?? "application/octet-stream",
    "content-length": size,
    "cache-control": "no-store",
  });
  createReadStream(file).pipe(response);
}
