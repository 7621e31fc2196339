#!/usr/bin/env node
/**
 * Mints a token for the edge example, for local runs: an HS256 JWT for a user, signed with
 * AUTH_SECRET (from the environment, else examples/edge/.dev.vars), valid for a number of seconds.
 *
 *   node examples/edge/mint-token.mjs alice [ttlSeconds=3600]
 *
 * In a real app your identity provider issues these; this script is the stand-in.
 */

import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const [user, ttl = "3600"] = process.argv.slice(2);
if (!user) {
  console.error("usage: node examples/edge/mint-token.mjs <user> [ttlSeconds]");
  process.exit(2);
}
const devVars = fileURLToPath(new URL("./.dev.vars", import.meta.url));
const secret =
  process.env.AUTH_SECRET ??
  (existsSync(devVars)
    ? /^AUTH_SECRET\s*=\s*"?([^"\n]*)"?\s*$/m.exec(readFileSync(devVars, "utf8"))?.[1]
    : undefined);
if (!secret) {
  console.error(
    "No AUTH_SECRET: set it in the environment or put AUTH_SECRET=... in examples/edge/.dev.vars.",
  );
  process.exit(2);
}
const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const input = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub: user, exp: Math.floor(Date.now() / 1000) + Number(ttl) })}`;
const key = await crypto.subtle.importKey(
  "raw",
  new TextEncoder().encode(secret),
  { name: "HMAC", hash: "SHA-256" },
  false,
  ["sign"],
);
const signature = Buffer.from(
  await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input)),
).toString("base64url");
console.log(`${input}.${signature}`);
