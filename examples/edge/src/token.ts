/**
 * HS256 JSON Web Tokens with WebCrypto: the claims the example reads, signing (for tests and local
 * runs) and the base64url and key helpers `auth.ts` verifies with. No `fiberline` import, so a
 * Node test can sign tokens with it too.
 */

/** The claims the example reads. */
export interface TokenClaims {
  /** The principal: who the caller is. */
  sub: string;
  /** Expiry, in seconds since the epoch. */
  exp: number;
}

export const encoder = new TextEncoder();
const HEADER = { alg: "HS256", typ: "JWT" };

/** Signs `claims` as an HS256 JWT with `secret`. */
export async function signToken(claims: TokenClaims, secret: string): Promise<string> {
  const signingInput = `${base64url(encoder.encode(JSON.stringify(HEADER)))}.${base64url(encoder.encode(JSON.stringify(claims)))}`;
  const signature = await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(signingInput));
  return `${signingInput}.${base64url(new Uint8Array(signature))}`;
}

/** The HMAC-SHA256 key for `secret` (not extractable). */
export function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text: string): Uint8Array {
  const binary = atob(
    text
      .replace(/-/g, "+")
      .replace(/_/g, "/")
      .padEnd(Math.ceil(text.length / 4) * 4, "="),
  );
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}
