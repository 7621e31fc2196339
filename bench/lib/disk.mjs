/** Bytes on disk of the bench origin's IndexedDB (B8), read from the browser profile. */

import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Total size of the files under every `*IndexedDB*` directory of `profile` for `origin` (`http_127.0.0.1_5299`). */
export function indexedDbBytes(profile, origin) {
  let total = 0;
  const walk = (dir, inside) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, inside || entry.name.startsWith(origin));
      else if (inside && entry.isFile()) {
        try {
          total += statSync(path).size;
        } catch {
          // Removed while we looked (a compaction): it no longer counts.
        }
      }
    }
  };
  walk(join(profile, "Default", "IndexedDB"), false);
  return total;
}
