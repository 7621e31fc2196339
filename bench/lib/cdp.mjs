/**
 * A minimal Chrome DevTools Protocol client over the browser's WebSocket endpoint, for what
 * Playwright does not expose: sessions on worker targets (`Runtime.getHeapUsage` of the bench
 * worker, B7). Node 20 has no WebSocket client, so this speaks RFC 6455 itself (text frames only,
 * client frames masked), which is all CDP needs.
 */

import { randomBytes } from "node:crypto";
import { request } from "node:http";

/** Connects to `ws://host:port/devtools/browser/...`; resolves with a `CdpConnection`. */
export function connectCdp(wsUrl) {
  const url = new URL(wsUrl);
  return new Promise((resolve, reject) => {
    const req = request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
      },
    });
    req.on("upgrade", (_res, socket) => resolve(new CdpConnection(socket)));
    req.on("response", (res) => reject(new Error(`CDP upgrade refused: ${res.statusCode}`)));
    req.on("error", reject);
    req.end();
  });
}

class CdpConnection {
  #socket;
  #buffer = Buffer.alloc(0);
  #fragments = [];
  #nextId = 1;
  #pending = new Map();

  constructor(socket) {
    this.#socket = socket;
    socket.on("data", (data) => this.#onData(data));
    socket.on("close", () => {
      for (const { reject } of this.#pending.values()) reject(new Error("CDP connection closed"));
      this.#pending.clear();
    });
  }

  /** Sends a command (to a flattened session when `sessionId` is given) and awaits its result. */
  send(method, params = {}, sessionId) {
    const id = this.#nextId++;
    const message = JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) });
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
      this.#socket.write(frame(Buffer.from(message)));
    });
  }

  close() {
    this.#socket.end();
    this.#socket.destroy();
  }

  #onData(data) {
    this.#buffer = Buffer.concat([this.#buffer, data]);
    for (;;) {
      const parsed = parseFrame(this.#buffer);
      if (!parsed) return;
      this.#buffer = this.#buffer.subarray(parsed.length);
      if (parsed.opcode === 0x8) return this.close();
      if (parsed.opcode === 0x9) {
        this.#socket.write(frame(parsed.payload, 0xa));
        continue;
      }
      if (parsed.opcode !== 0x1 && parsed.opcode !== 0x0) continue;
      this.#fragments.push(parsed.payload);
      if (!parsed.fin) continue;
      const text = Buffer.concat(this.#fragments).toString("utf8");
      this.#fragments = [];
      this.#onMessage(JSON.parse(text));
    }
  }

  #onMessage(message) {
    if (message.id === undefined) return; // events are not needed here
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.error) pending.reject(new Error(`${pending.method}: ${message.error.message}`));
    else pending.resolve(message.result);
  }
}

function frame(payload, opcode = 0x1) {
  const mask = randomBytes(4);
  const length = payload.length;
  const header =
    length < 126
      ? Buffer.from([0x80 | opcode, 0x80 | length])
      : length < 65536
        ? Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff])
        : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), u64(length)]);
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i % 4];
  return Buffer.concat([header, mask, masked]);
}

function u64(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function parseFrame(buf) {
  if (buf.length < 2) return null;
  const fin = (buf[0] & 0x80) !== 0;
  const opcode = buf[0] & 0x0f;
  let length = buf[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buf.length < 4) return null;
    length = buf.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buf.length < 10) return null;
    length = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  // Server frames are never masked.
  if (buf.length < offset + length) return null;
  return { fin, opcode, payload: buf.subarray(offset, offset + length), length: offset + length };
}

/**
 * Attaches to the first target whose type is `type` and whose title or URL contains `match`,
 * and returns a function that sends commands to it.
 */
export async function attachToTarget(cdp, { type, match }) {
  const { targetInfos } = await cdp.send("Target.getTargets");
  const target = targetInfos.find(
    (t) => t.type === type && (match === undefined || t.title.includes(match) || t.url.includes(match)),
  );
  if (!target) {
    const seen = targetInfos.map((t) => `${t.type} ${t.title} ${t.url}`).join("; ");
    throw new Error(`no ${type} target matching ${match}; targets: ${seen}`);
  }
  const { sessionId } = await cdp.send("Target.attachToTarget", { targetId: target.targetId, flatten: true });
  return {
    send: (method, params) => cdp.send(method, params, sessionId),
    detach: () => cdp.send("Target.detachFromTarget", { sessionId }).catch(() => {}),
  };
}
