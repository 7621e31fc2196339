/** Types for scripts/find-chromium.mjs, so TypeScript configs can import it. */
export declare const chromiumArgs: readonly string[];
export declare const systemChromiumPaths: readonly string[];
export declare const noChromiumMessage: string;
/** Path of a Chromium executable; throws an Error saying what to install when none is found. */
export declare function findChromium(options?: { systemPaths?: readonly string[] }): string;
/** Like findChromium, but with none found runs `npx playwright install chromium` first (see the .mjs). */
export declare function ensureChromium(options?: {
  systemPaths?: readonly string[];
  install?: () => Promise<number>;
  log?: (line: string) => void;
}): Promise<string>;
