#!/usr/bin/env node
/**
 * Draws the demo's PWA icons (public/icons/*.png) with no image library: a signed-distance
 * rasterizer for a rounded square, a wave (the fiber) and three nodes (its steps), written as PNG
 * bytes with node:zlib. Run `node app/tools/generate-icons.mjs` after changing the design.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { deflateSync } from "node:zlib";

const out = new URL("../../public/icons/", import.meta.url);
mkdirSync(out, { recursive: true });

const BG = [15, 23, 42];
const FROM = [45, 212, 191];
const TO = [56, 189, 248];
const NODE = [248, 250, 252];

function crc32(bytes) {
  let crc = ~0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}

function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

function png(size, rgba) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // RGBA
  const raw = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0; // filter: none
    rgba.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw, { level: 9 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

const clamp = (v) => Math.min(1, Math.max(0, v));
const mix = (a, b, t) => a.map((c, i) => c + (b[i] - c) * t);

/** Distance from (px, py) to a rounded square of half-size h and radius r centred at c. */
function roundRectDistance(px, py, c, h, r) {
  const qx = Math.abs(px - c) - (h - r);
  const qy = Math.abs(py - c) - (h - r);
  return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0) - r;
}

function draw(size, { maskable }) {
  const rgba = Buffer.alloc(size * size * 4);
  const s = size / 512;
  // Maskable icons keep their content inside the central 80% safe zone.
  const k = maskable ? 0.78 : 1;
  const cx = size / 2;
  const wave = [];
  for (let i = 0; i <= 200; i++) {
    const t = i / 200;
    const x = cx + (t - 0.5) * 340 * s * k;
    const y = cx + Math.sin(t * Math.PI * 2) * 70 * s * k;
    wave.push([x, y, t]);
  }
  const nodes = [0.125, 0.5, 0.875].map((t) => [
    cx + (t - 0.5) * 340 * s * k,
    cx + Math.sin(t * Math.PI * 2) * 70 * s * k,
  ]);
  const stroke = 26 * s * k;
  const nodeR = 30 * s * k;
  const ring = 10 * s * k;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const px = x + 0.5;
      const py = y + 0.5;
      let alpha = 1;
      if (!maskable) alpha = clamp(0.5 - roundRectDistance(px, py, cx, 236 * s, 112 * s));
      let color = BG;
      let best = Number.POSITIVE_INFINITY;
      let bestT = 0;
      for (let i = 1; i < wave.length; i++) {
        const [ax, ay] = wave[i - 1];
        const [bx, by, bt] = wave[i];
        if (Math.abs(px - ax) > stroke * 2 && Math.abs(px - bx) > stroke * 2) continue;
        const dx = bx - ax;
        const dy = by - ay;
        const u = clamp(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy));
        const d = Math.hypot(px - (ax + u * dx), py - (ay + u * dy));
        if (d < best) {
          best = d;
          bestT = bt;
        }
      }
      color = mix(color, mix(FROM, TO, bestT), clamp(stroke / 2 + 0.5 - best));
      for (const [nx, ny] of nodes) {
        const d = Math.hypot(px - nx, py - ny);
        color = mix(color, BG, clamp(nodeR + ring + 0.5 - d));
        color = mix(color, NODE, clamp(nodeR + 0.5 - d));
      }
      const o = (y * size + x) * 4;
      rgba[o] = Math.round(color[0]);
      rgba[o + 1] = Math.round(color[1]);
      rgba[o + 2] = Math.round(color[2]);
      rgba[o + 3] = Math.round(alpha * 255);
    }
  }
  return png(size, rgba);
}

writeFileSync(new URL("icon-192.png", out), draw(192, { maskable: false }));
writeFileSync(new URL("icon-512.png", out), draw(512, { maskable: false }));
writeFileSync(new URL("icon-maskable-512.png", out), draw(512, { maskable: true }));
console.log("wrote public/icons/icon-192.png, icon-512.png, icon-maskable-512.png");
