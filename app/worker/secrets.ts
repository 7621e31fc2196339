/**
 * The demo worker's secrets at rest: the user's API key is kept encrypted with AES-GCM under a
 * key that cannot leave the browser. The AES key is generated non-extractable and stored as a
 * `CryptoKey` object in the worker's database (IndexedDB keeps a `CryptoKey` as the browser's own
 * handle: no script, the worker's included, can read its bytes). Only `openSecret`, called by the
 * worker when it builds the model provider for a request, ever sees the plaintext.
 *
 * What it protects: the key never appears in plain text in the profile's files, backups or a scan
 * for key-shaped strings. What it does not: a script of the origin shares this database and can
 * decrypt with the stored `CryptoKey` handle, and the AES key's material sits in the same profile.
 * docs/security.md says so in full.
 */

/** An encrypted secret: what the database holds instead of the plaintext. */
export interface SealedSecret {
  /** The AES-GCM nonce (12 random bytes, never reused: one per sealing). */
  iv: Uint8Array<ArrayBuffer>;
  /** Ciphertext with its 16-byte authentication tag. */
  data: ArrayBuffer;
}

/** Where the worker keeps the AES key: a `CryptoKey` it can use but not read. */
export interface KeyStore {
  get(): Promise<CryptoKey | undefined>;
  put(key: CryptoKey): Promise<void>;
}

const encoder = new TextEncoder();

/** Encrypts `plaintext` under the store's key (created on first use). */
export async function sealSecret(keys: KeyStore, plaintext: string): Promise<SealedSecret> {
  const key = await secretKey(keys);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, encoder.encode(plaintext));
  return { iv, data };
}

/**
 * Decrypts a sealed secret. Throws `TypeError` with what to do when it cannot (the AES key was
 * deleted with the site's data, or the ciphertext was altered): the user enters the key again.
 */
export async function openSecret(keys: KeyStore, sealed: SealedSecret): Promise<string> {
  const key = await keys.get();
  if (!key)
    throw new TypeError(
      "The saved API key cannot be decrypted any more (its encryption key is gone): enter it again in Settings.",
    );
  try {
    const plaintext = await crypto.subtle.decrypt({ name: "AES-GCM", iv: sealed.iv }, key, sealed.data);
    return new TextDecoder().decode(plaintext);
  } catch {
    throw new TypeError(
      "The saved API key could not be decrypted (it was altered or sealed under another key): enter it again in Settings.",
    );
  }
}

let creating: Promise<CryptoKey> | undefined;

async function secretKey(keys: KeyStore): Promise<CryptoKey> {
  const existing = await keys.get();
  if (existing) return existing;
  // One key per database, even when two sealings race in one worker.
  creating ??= (async () => {
    const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
      "encrypt",
      "decrypt",
    ]);
    await keys.put(key);
    return key;
  })().finally(() => {
    creating = undefined;
  });
  return await creating;
}
