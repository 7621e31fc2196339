/**
 * Structured-clone values as JSON text, for `SqliteStore`: SQLite keeps strings, numbers and
 * blobs, while fiber inputs, step results, stashes and chunks are any structured-cloneable value
 * (what `IdbStore` keeps natively). A step that returned a `Date` must replay as a `Date`.
 *
 * `encodeValue` first runs `structuredClone`, so exactly the values IndexedDB refuses are refused
 * here too (`DataCloneError`), then writes the clone as JSON in which every value JSON cannot hold
 * is a tagged object `{ "$fl": tag, ... }`. Shared references and cycles survive as `ref` tags.
 */

/** The key that marks a tagged object; a plain object that has it is itself wrapped. */
const TAG = "$fl";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Tagged = { [TAG]: string; [key: string]: Json };

type TypedArrayName =
  | "Int8Array"
  | "Uint8Array"
  | "Uint8ClampedArray"
  | "Int16Array"
  | "Uint16Array"
  | "Int32Array"
  | "Uint32Array"
  | "Float32Array"
  | "Float64Array"
  | "BigInt64Array"
  | "BigUint64Array";

const TYPED_ARRAYS: Record<
  TypedArrayName,
  new (
    buffer: ArrayBuffer,
    offset: number,
    length: number,
  ) => ArrayBufferView
> = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
};

/** Error constructors structured clone keeps by name (others become `Error`). */
const ERRORS: Record<string, ErrorConstructor> = {
  Error,
  EvalError,
  RangeError,
  ReferenceError,
  SyntaxError,
  TypeError,
  URIError,
};

/**
 * Encodes a structured-cloneable value as JSON text.
 *
 * Failure semantics: throws the `structuredClone` error (a `DataCloneError` `DOMException`) for a
 * value IndexedDB would refuse, or a `DataCloneError` for a clonable value this codec cannot hold
 * synchronously (`Blob`, `File`); nothing is partially encoded.
 */
export function encodeValue(value: unknown): string {
  // Most rows (records, journal entries, chunks) are plain JSON already: the same text, without
  // the clone and the tagging walk, which cost several times JSON.stringify.
  if (isPlainJson(value, new Set())) return JSON.stringify(value);
  const clone = structuredClone(value);
  return JSON.stringify(new Encoder().encode(clone));
}

/** Decodes `encodeValue` output into a fresh value. */
export function decodeValue(text: string): unknown {
  const json = JSON.parse(text) as Json;
  // A tag is always a `"$fl":` key; text without one is plain JSON, which decodes to itself.
  return text.includes(`"${TAG}"`) ? new Decoder().decode(json) : json;
}

/**
 * Whether `JSON.stringify` writes `value` exactly as the tagging encoder would, so that
 * `JSON.parse` gives back what `structuredClone` would: strings, booleans, finite numbers other
 * than -0, null, dense arrays without named properties, and objects of `Object.prototype` (or
 * none) without the tag key, each object reached once (a shared one or a cycle needs `ref` tags).
 */
function isPlainJson(value: unknown, seen: Set<object>): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value) && !Object.is(value, -0);
    case "object": {
      if (value === null) return true;
      if (seen.has(value)) return false;
      seen.add(value);
      if (Array.isArray(value)) {
        if (Object.getPrototypeOf(value) !== Array.prototype) return false;
        // A hole or a named property makes the keys differ from the indexes.
        if (Object.keys(value).length !== value.length) return false;
        for (const item of value) if (!isPlainJson(item, seen)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key of Object.keys(value)) {
        if (key === TAG || !isPlainJson((value as Record<string, unknown>)[key], seen)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

class Encoder {
  readonly #ids = new Map<object, number>();

  encode(value: unknown): Json {
    switch (typeof value) {
      case "string":
      case "boolean":
        return value;
      case "number":
        return encodeNumber(value);
      case "bigint":
        return { [TAG]: "bigint", v: value.toString() };
      case "undefined":
        return { [TAG]: "undefined" };
      case "object":
        return value === null ? null : this.#object(value);
      default:
        // structuredClone already refused functions and symbols.
        throw cloneError(`a ${typeof value} cannot be stored`);
    }
  }

  #object(value: object): Json {
    const seen = this.#ids.get(value);
    if (seen !== undefined) return { [TAG]: "ref", id: seen };
    const id = this.#ids.size;
    this.#ids.set(value, id);
    if (Array.isArray(value)) return this.#array(value);
    const tag = Object.prototype.toString.call(value).slice(8, -1);
    if (tag === "Object") return this.#plain(value as Record<string, unknown>);
    if (tag === "Date") {
      const time = (value as Date).getTime();
      return { [TAG]: "date", v: Number.isNaN(time) ? null : time };
    }
    if (tag === "RegExp") {
      const re = value as RegExp;
      return { [TAG]: "regexp", source: re.source, flags: re.flags };
    }
    if (tag === "Map") {
      const entries = [...(value as Map<unknown, unknown>)].map(([k, v]) => [this.encode(k), this.encode(v)]);
      return { [TAG]: "map", v: entries };
    }
    if (tag === "Set") return { [TAG]: "set", v: [...(value as Set<unknown>)].map((v) => this.encode(v)) };
    if (tag === "ArrayBuffer") return { [TAG]: "buffer", v: toBase64(new Uint8Array(value as ArrayBuffer)) };
    if (tag === "DataView" || tag in TYPED_ARRAYS) {
      const view = value as ArrayBufferView;
      const length = tag === "DataView" ? view.byteLength : (view as Uint8Array).length;
      return { [TAG]: "view", type: tag, buffer: this.encode(view.buffer), offset: view.byteOffset, length };
    }
    if (tag === "Error") return this.#error(value as Error);
    if (tag === "Boolean" || tag === "Number" || tag === "String" || tag === "BigInt") {
      return { [TAG]: "box", v: this.encode((value as { valueOf(): unknown }).valueOf()) };
    }
    throw cloneError(`a ${tag} cannot be stored by SqliteStore; store its contents (bytes, text) instead`);
  }

  #array(value: unknown[]): Json {
    const items: Json[] = [];
    for (let i = 0; i < value.length; i++) {
      items.push(i in value ? this.encode(value[i]) : { [TAG]: "hole" });
    }
    const extra = Object.keys(value).filter((key) => !isIndex(key, value.length));
    if (extra.length === 0) return items;
    // Named properties on an array survive structured clone; keep them too.
    return {
      [TAG]: "array",
      v: items,
      props: this.#fields(value as unknown as Record<string, unknown>, extra),
    };
  }

  #plain(value: Record<string, unknown>): Json {
    const fields = this.#fields(value, Object.keys(value));
    return TAG in value ? { [TAG]: "object", v: fields } : fields;
  }

  #fields(value: Record<string, unknown>, keys: string[]): { [key: string]: Json } {
    const out: { [key: string]: Json } = {};
    for (const key of keys) defineField(out, key, this.encode(value[key]));
    return out;
  }

  #error(error: Error): Json {
    const out: Tagged = {
      [TAG]: "error",
      name: error.name in ERRORS ? error.name : "Error",
      message: error.message,
    };
    if (typeof error.stack === "string") out.stack = error.stack;
    if ("cause" in error) out.cause = this.encode(error.cause);
    return out;
  }
}

class Decoder {
  readonly #refs: unknown[] = [];

  decode(json: Json): unknown {
    if (json === null || typeof json !== "object") return json;
    if (Array.isArray(json)) return this.#array(json, this.#reserve());
    const tag = json[TAG];
    if (typeof tag !== "string") return this.#fields(json, this.#register({}));
    return this.#tagged(tag, json as Tagged);
  }

  #tagged(tag: string, json: Tagged): unknown {
    switch (tag) {
      case "undefined":
        return undefined;
      case "number":
        return Number(json.v);
      case "bigint":
        return BigInt(json.v as string);
      case "ref":
        return this.#refs[json.id as number];
      case "object":
        return this.#fields(json.v as { [key: string]: Json }, this.#register({}));
      case "array": {
        const array = this.#array(json.v as Json[], this.#reserve());
        return this.#fields(
          json.props as { [key: string]: Json },
          array as unknown as Record<string, unknown>,
        );
      }
      case "date":
        return this.#register(new Date(json.v === null ? Number.NaN : (json.v as number)));
      case "regexp":
        return this.#register(new RegExp(json.source as string, json.flags as string));
      case "map": {
        const map = this.#register(new Map<unknown, unknown>());
        for (const [k, v] of json.v as Json[][]) map.set(this.decode(k ?? null), this.decode(v ?? null));
        return map;
      }
      case "set": {
        const set = this.#register(new Set<unknown>());
        for (const v of json.v as Json[]) set.add(this.decode(v));
        return set;
      }
      case "buffer":
        return this.#register(fromBase64(json.v as string).buffer);
      case "view": {
        const slot = this.#reserve();
        const buffer = this.decode(json.buffer ?? null) as ArrayBuffer;
        const type = json.type as string;
        const offset = json.offset as number;
        const length = json.length as number;
        const view =
          type === "DataView"
            ? new DataView(buffer, offset, length)
            : new TYPED_ARRAYS[type as TypedArrayName](buffer, offset, length);
        this.#refs[slot] = view;
        return view;
      }
      case "error": {
        const ErrorClass = ERRORS[json.name as string] ?? Error;
        const error = this.#register(new ErrorClass(json.message as string));
        if (typeof json.stack === "string") error.stack = json.stack;
        else Reflect.deleteProperty(error, "stack");
        if ("cause" in json) error.cause = this.decode(json.cause ?? null);
        return error;
      }
      case "box": {
        const slot = this.#reserve();
        const boxed = Object(this.decode(json.v ?? null)) as object;
        this.#refs[slot] = boxed;
        return boxed;
      }
      default:
        throw new Error(`SqliteStore: unknown value tag "${tag}" (written by a newer release?)`);
    }
  }

  #array(items: Json[], slot: number): unknown[] {
    const array: unknown[] = new Array(items.length);
    this.#refs[slot] = array;
    items.forEach((item, i) => {
      const isHole =
        item !== null && typeof item === "object" && !Array.isArray(item) && item[TAG] === "hole";
      if (!isHole) array[i] = this.decode(item);
    });
    return array;
  }

  #fields(json: { [key: string]: Json }, target: Record<string, unknown>): Record<string, unknown> {
    for (const [key, item] of Object.entries(json)) {
      defineField(target, key, this.decode(item));
    }
    return target;
  }

  #register<T>(value: T): T {
    this.#refs.push(value);
    return value;
  }

  #reserve(): number {
    this.#refs.push(undefined);
    return this.#refs.length - 1;
  }
}

/** Sets an own data property; plain assignment would turn a `"__proto__"` key into a prototype. */
function defineField(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function encodeNumber(value: number): Json {
  if (Number.isFinite(value) && !Object.is(value, -0)) return value;
  return { [TAG]: "number", v: Object.is(value, -0) ? "-0" : String(value) };
}

function isIndex(key: string, length: number): boolean {
  const n = Number(key);
  return Number.isInteger(n) && n >= 0 && n < length && String(n) === key;
}

function cloneError(message: string): Error {
  return new DOMException(message, "DataCloneError");
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
