/** SHA-256 in lowercase hex, with WebCrypto (pages, workers, workerd and Node 20 all have it). */

/** The SHA-256 of `text`'s UTF-8, as lowercase hex. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
