#!/usr/bin/env node
/**
 * Proves every package.json "exports" entry works for a consumer after `npm run build`.
 *
 * It builds a throwaway consumer project whose `node_modules/fiberline` is a symlink to this repo,
 * then, per entry: the `types` and `import` files exist; TypeScript (moduleResolution "bundler")
 * resolves `import type * as X from "fiberline/<entry>"` to the declared `types` file; and for the
 * Node-safe entries, Node imports the module. Used by `npm run check:exports` and `npm test`.
 */
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
/** Entries whose modules load in plain Node (no DOM, Service Worker or React globals at import). */
const nodeSafe = new Set([".", "./agent", "./testing", "./edge", "./extension", "./ai"]);

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const entries = Object.entries(pkg.exports ?? {});
if (entries.length === 0) {
  console.error(`check:exports: package.json has no "exports" map`);
  process.exit(1);
}

const consumer = mkdtempSync(join(tmpdir(), "fiberline-exports-"));
try {
  process.exitCode = run(consumer) ? 0 : 1;
} catch (error) {
  console.error(`check:exports: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  rmSync(consumer, { recursive: true, force: true });
}

/** @param {string} dir */
function run(dir) {
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(root, join(dir, "node_modules", pkg.name), "dir");

  /** @type {Map<string, string[]>} entry -> problems */
  const problems = new Map();
  /** @type {Map<string, string[]>} entry -> notes for the ok line */
  const notes = new Map();
  const specifiers = new Map();
  entries.forEach(([key], i) => {
    problems.set(key, []);
    notes.set(key, []);
    specifiers.set(key, {
      spec: key === "." ? pkg.name : `${pkg.name}/${key.slice(2)}`,
      file: `entry${i}.ts`,
    });
  });

  // 1. Shape of the map and files on disk.
  for (const [key, target] of entries) {
    const list = problems.get(key);
    if (typeof target !== "object" || target === null) {
      list.push(`expected { "types", "import" }, got ${JSON.stringify(target)}`);
      continue;
    }
    const conditions = Object.keys(target);
    if (conditions[0] !== "types") list.push(`"types" must be the first condition, got [${conditions}]`);
    for (const condition of ["types", "import"]) {
      const file = target[condition];
      if (typeof file !== "string") list.push(`missing "${condition}" condition`);
      else if (!existsSync(join(root, file)))
        list.push(`${condition}: ${file} does not exist (run npm run build)`);
    }
  }

  // 2. TypeScript resolves each entry, as a consumer with moduleResolution "bundler" would.
  for (const { spec, file } of specifiers.values()) {
    writeFileSync(join(dir, file), `import type * as X from "${spec}";\nexport type Api = typeof X;\n`);
  }
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "ESNext",
        moduleResolution: "bundler",
        // The same libs the sources are checked with, so an error below is the declarations' own.
        lib: ["ES2023", "DOM", "DOM.Iterable", "WebWorker.ImportScripts"],
        strict: true,
        noEmit: true,
        // Checked on purpose: emitted .d.ts that reference a missing or excluded file must fail.
        skipLibCheck: false,
        typeRoots: [join(root, "node_modules/@types")],
        types: ["node"],
      },
      files: [...specifiers.values()].map((s) => s.file),
    }),
  );
  const tsc = spawnSync(
    process.execPath,
    [join(root, "node_modules/typescript/bin/tsc"), "-p", dir, "--listFiles"],
    {
      cwd: dir,
      encoding: "utf8",
    },
  );
  if (tsc.error) throw new Error(`could not run tsc: ${tsc.error.message}`);
  const tscOut = `${tsc.stdout}${tsc.stderr}`;
  const listed = new Set(tscOut.split("\n").map((line) => line.trim()));
  for (const [key, target] of entries) {
    const { file } = specifiers.get(key);
    const errors = tscOut.split("\n").filter((line) => line.startsWith(`${file}(`));
    for (const error of errors) problems.get(key).push(`tsc: ${error.slice(file.length)}`);
    const types = typeof target?.types === "string" ? resolve(root, target.types) : undefined;
    if (types && errors.length === 0 && !listed.has(types)) {
      problems.get(key).push(`tsc did not load ${target.types} for "${specifiers.get(key).spec}"`);
    }
  }
  // Errors inside our own emitted declarations (dist/types), e.g. an import of an excluded file.
  const errorLines = tscOut.split("\n").filter((line) => /\(\d+,\d+\): error TS/.test(line));
  const declarationErrors = errorLines.filter((line) => line.includes("dist/types/"));
  const foreignErrors = errorLines.filter(
    (line) => !line.includes("dist/types/") && !/^entry\d+\.ts\(/.test(line),
  );
  for (const line of foreignErrors) console.log(`warn  dependency declarations: ${line}`);
  if (declarationErrors.length > 0) {
    console.log(`FAIL  emitted declarations have errors:\n      ${declarationErrors.join("\n      ")}`);
  }
  if (tsc.status !== 0 && errorLines.length === 0) {
    // An error outside the entry files (config, lib) would otherwise pass unnoticed.
    throw new Error(`tsc failed in the consumer project:\n${tscOut}`);
  }

  // 3. Node imports the Node-safe entries by their public name.
  for (const [key] of entries) {
    if (!nodeSafe.has(key)) {
      notes.get(key).push("node import skipped (browser-only)");
      continue;
    }
    if (problems.get(key).length > 0) continue;
    const { spec } = specifiers.get(key);
    const probe = `const m = await import(${JSON.stringify(spec)}); console.log(Object.keys(m).length);`;
    const node = spawnSync(process.execPath, ["--input-type=module", "-e", probe], {
      cwd: dir,
      encoding: "utf8",
    });
    if (node.status !== 0) {
      const reason = (node.stderr || node.stdout).trim().split("\n").slice(0, 6).join("\n      ");
      problems.get(key).push(`node import failed:\n      ${reason}`);
    } else {
      notes.get(key).push(`node import ok (${node.stdout.trim()} exports)`);
    }
  }

  let ok = declarationErrors.length === 0;
  for (const [key] of entries) {
    const list = problems.get(key);
    const { spec } = specifiers.get(key);
    if (list.length === 0) {
      console.log(`ok    ${spec.padEnd(20)} types resolved; ${notes.get(key).join("; ")}`);
    } else {
      ok = false;
      console.log(`FAIL  ${spec.padEnd(20)} ${list.join(`\n${" ".repeat(27)}`)}`);
    }
  }
  console.log(ok ? `check:exports: all ${entries.length} entries resolve` : "check:exports: failed");
  return ok;
}
