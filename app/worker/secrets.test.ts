import { describe, expect, it } from "vitest";
import { type KeyStore, openSecret, sealSecret } from "./secrets";

function memoryKeys(): KeyStore & { key: CryptoKey | undefined } {
  const store = {
    key: undefined as CryptoKey | undefined,
    get: async () => store.key,
    put: async (key: CryptoKey) => {
      store.key = key;
    },
  };
  return store;
}

const SECRET = "sk-fiberline-unit-Zq81";

describe("secrets at rest", () => {
  it("seals to ciphertext that does not hold the secret, and opens it again", async () => {
    const keys = memoryKeys();
    const sealed = await sealSecret(keys, SECRET);
    expect(Buffer.from(sealed.data).includes(Buffer.from(SECRET))).toBe(false);
    expect(await openSecret(keys, sealed)).toBe(SECRET);
    // A fresh nonce per sealing: the same secret never seals to the same bytes.
    const again = await sealSecret(keys, SECRET);
    expect(Buffer.from(again.iv).equals(Buffer.from(sealed.iv))).toBe(false);
  });

  it("keeps one AES key that no script can export", async () => {
    const keys = memoryKeys();
    await sealSecret(keys, SECRET);
    const key = keys.key as CryptoKey;
    expect(key.extractable).toBe(false);
    await expect(crypto.subtle.exportKey("raw", key)).rejects.toThrow();
    await sealSecret(keys, "another");
    expect(keys.key).toBe(key);
  });

  it("refuses an altered ciphertext or a lost key with a message that says to enter the key again", async () => {
    const keys = memoryKeys();
    const sealed = await sealSecret(keys, SECRET);
    const altered = new Uint8Array(sealed.data.slice(0));
    altered[0] = (altered[0] ?? 0) ^ 1;
    await expect(openSecret(keys, { iv: sealed.iv, data: altered.buffer })).rejects.toThrow(/enter it again/);
    await expect(openSecret(memoryKeys(), sealed)).rejects.toThrow(/enter it again/);
  });
});
