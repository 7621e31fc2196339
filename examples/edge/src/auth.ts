/**
 * The example Worker's authentication: a JSON Web Token signed with HMAC-SHA256 (HS256), sent as
 * `Authorization: Bearer <token>`, verified with WebCrypto against the `AUTH_SECRET` Worker
 * secret. The token's `sub` is the principal that owns the fibers it starts; `exp` (seconds since
 * the epoch, required) bounds how long a leaked token is good for.
 *
 * Your identity provider issues these tokens in a real app; `signToken` (`token.ts`) and
 * `examples/edge/mint-token.mjs` make them for tests and local runs.
 */

import { FiberlineError, UnauthorizedError } from "fiberline";
import { encoder, fromBase64url, hmacKey, type TokenClaims } from "./token";

/**
 * Verifies the bearer token in `authorization` (the header's value) and returns its claims.
 *
 * Throws `UnauthorizedError` (`unauthorized`, HTTP 401) for a missing, malformed, wrongly signed
 * or expired token, and `FiberlineError` (`auth_not_configured`, HTTP 500) when the Worker has no
 * secret: without one it refuses everything rather than letting everyone in.
 */
export async function verifyToken(
  authorization: string | null,
  secret: string | undefined,
  nowMs = Date.now(),
): Promise<TokenClaims> {
  if (!secret) {
    throw new FiberlineError(
      "auth_not_configured",
      "The Worker has no AUTH_SECRET: set it with `npx wrangler secret put AUTH_SECRET` (or in examples/edge/.dev.vars locally).",
    );
  }
  const token = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(authorization ?? "")?.[1];
  if (!token) throw refused("send `Authorization: Bearer <token>` with a signed token");
  const [header = "", payload = "", signature = ""] = token.split(".");
  const valid = await crypto.subtle.verify(
    "HMAC",
    await hmacKey(secret),
    fromBase64url(signature),
    encoder.encode(`${header}.${payload}`),
  );
  if (!valid) throw refused("the token's signature does not match; get a new token");
  const alg = (parseJson(header) as { alg?: unknown } | undefined)?.alg;
  if (alg !== "HS256") throw refused("the token is not HS256");
  const claims = parseJson(payload) as Partial<TokenClaims> | undefined;
  if (typeof claims?.sub !== "string" || claims.sub === "")
    throw refused("the token names no subject (`sub`)");
  if (typeof claims.exp !== "number") throw refused("the token has no expiry (`exp`)");
  if (claims.exp * 1000 <= nowMs) throw refused("the token has expired; get a new one");
  return { sub: claims.sub, exp: claims.exp };
}

function refused(why: string): UnauthorizedError {
  return new UnauthorizedError("unauthorized", `Not authorised: ${why}.`);
}

function parseJson(part: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(fromBase64url(part)));
  } catch {
    return undefined;
  }
}
