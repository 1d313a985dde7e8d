// Where two decoded states differ: the first value, by path, that one holds
// and the other does not. It compares what a dump carries (protocol/wire.ts:
// msgpack with structured clone) by type and by value: a Date by its time,
// binary data by its bytes, an object, a Map or a Set by what it holds and
// not by the order it was filled in, since a state rebuilt by a restore may
// well add the same keys in another order. Cycles and shared objects compare
// by structure too, so a dump that came back with a shared object copied
// twice is the same state.

import { PathStep, pathSegment } from "../protocol/state-path.ts";

/**
 * The path of the first value where `a` and `b` differ, starting with
 * `root`, or undefined when they are the same state. Throws a RangeError for
 * a state nested deeper than the stack allows.
 */
export function firstDifference(a: unknown, b: unknown, root: string): string | undefined {
  const found = new Comparison().diff(a, b);
  return found === undefined ? undefined : root + found;
}

/** What a value is, for comparison: values of different kinds always differ. */
function kindOf(value: object): string {
  if (Array.isArray(value)) return "array";
  if (value instanceof Map) return "map";
  if (value instanceof Set) return "set";
  if (value instanceof Date) return "date";
  if (value instanceof RegExp) return "regexp";
  if (value instanceof Error) return "error";
  // A Buffer and a Uint8Array are the same binary data; the tag says Uint8Array for both.
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return Object.prototype.toString.call(value);
  return "object";
}

function bytesOf(value: ArrayBuffer | ArrayBufferView): Uint8Array {
  return value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

const isObject = (value: unknown): value is object => typeof value === "object" && value !== null;

class Comparison {
  /**
   * Pairs of objects being compared, assumed equal while their comparison
   * runs: a cycle that leads back to a pair is equal as far as that pair
   * goes (the comparison of the pair itself decides). A pair found to
   * differ is forgotten, so that a trial match (of a Set's elements) that
   * failed does not count as equal later.
   */
  readonly #assumed = new Map<object, Set<object>>();

  /** The path from here to the first difference ("" for this value itself), or undefined for none. */
  diff(a: unknown, b: unknown): string | undefined {
    if (Object.is(a, b)) return undefined;
    if (!isObject(a) || !isObject(b)) return "";
    const kind = kindOf(a);
    if (kind !== kindOf(b)) return "";
    let pairs = this.#assumed.get(a);
    if (pairs?.has(b) === true) return undefined;
    if (pairs === undefined) this.#assumed.set(a, (pairs = new Set()));
    pairs.add(b);
    const found = this.#diffKind(kind, a, b);
    if (found !== undefined) pairs.delete(b);
    return found;
  }

  #same(a: unknown, b: unknown): boolean {
    return this.diff(a, b) === undefined;
  }

  #diffKind(kind: string, a: object, b: object): string | undefined {
    switch (kind) {
      case "array":
        return this.#diffArrays(a as unknown[], b as unknown[]);
      case "map":
        return this.#diffMaps(a as Map<unknown, unknown>, b as Map<unknown, unknown>);
      case "set":
        return this.#diffSets(a as Set<unknown>, b as Set<unknown>);
      case "date":
        return Object.is((a as Date).getTime(), (b as Date).getTime()) ? undefined : "";
      case "regexp":
        return (a as RegExp).source === (b as RegExp).source && (a as RegExp).flags === (b as RegExp).flags ? undefined : "";
      case "error":
        return (a as Error).name === (b as Error).name && (a as Error).message === (b as Error).message ? undefined : "";
      case "object":
        return this.#diffObjects(a as Record<string, unknown>, b as Record<string, unknown>);
      default:
        return sameBytes(bytesOf(a as ArrayBuffer | ArrayBufferView), bytesOf(b as ArrayBuffer | ArrayBufferView)) ? undefined : "";
    }
  }

  #diffArrays(a: unknown[], b: unknown[]): string | undefined {
    const shorter = Math.min(a.length, b.length);
    for (let i = 0; i < shorter; i++) {
      const found = this.diff(a[i], b[i]);
      if (found !== undefined) return pathSegment(PathStep.PROPERTY, i) + found;
    }
    // The first element only one of them has.
    return a.length === b.length ? undefined : pathSegment(PathStep.PROPERTY, shorter);
  }

  #diffObjects(a: Record<string, unknown>, b: Record<string, unknown>): string | undefined {
    for (const key of Object.keys(a)) {
      if (!Object.hasOwn(b, key)) return pathSegment(PathStep.PROPERTY, key);
      const found = this.diff(a[key], b[key]);
      if (found !== undefined) return pathSegment(PathStep.PROPERTY, key) + found;
    }
    for (const key of Object.keys(b)) if (!Object.hasOwn(a, key)) return pathSegment(PathStep.PROPERTY, key);
    return undefined;
  }

  /**
   * A Map's values compare under the same key: a primitive key is looked up,
   * an object key (rare in a state) is matched to an equal key of the other
   * Map, each used once.
   */
  #diffMaps(a: Map<unknown, unknown>, b: Map<unknown, unknown>): string | undefined {
    const unmatched = [...b.keys()].filter(isObject);
    let i = 0;
    for (const [key, value] of a) {
      if (isObject(key)) {
        const at = unmatched.findIndex((other) => this.#same(key, other));
        if (at < 0) return pathSegment(PathStep.MAP_KEY, i);
        const found = this.diff(value, b.get(unmatched[at]));
        if (found !== undefined) return pathSegment(PathStep.MAP_KEY, i) + found;
        unmatched.splice(at, 1);
      } else {
        if (!b.has(key)) return pathSegment(PathStep.MAP_VALUE, key);
        const found = this.diff(value, b.get(key));
        if (found !== undefined) return pathSegment(PathStep.MAP_VALUE, key) + found;
      }
      i++;
    }
    if (a.size === b.size) return undefined;
    // `b` holds more: name the first key `a` does not have.
    let j = 0;
    for (const key of b.keys()) {
      if (isObject(key) ? unmatched.includes(key) : !a.has(key)) return isObject(key) ? pathSegment(PathStep.MAP_KEY, j) : pathSegment(PathStep.MAP_VALUE, key);
      j++;
    }
    return undefined;
  }

  /** A Set's elements compare by membership: a primitive is looked up, an object matched to an equal one, each used once. */
  #diffSets(a: Set<unknown>, b: Set<unknown>): string | undefined {
    const unmatched = [...b].filter(isObject);
    let i = 0;
    for (const element of a) {
      if (isObject(element)) {
        const at = unmatched.findIndex((other) => this.#same(element, other));
        if (at < 0) return pathSegment(PathStep.SET_ELEMENT, i);
        unmatched.splice(at, 1);
      } else if (!b.has(element)) {
        return pathSegment(PathStep.SET_ELEMENT, i);
      }
      i++;
    }
    if (a.size === b.size) return undefined;
    let j = 0;
    for (const element of b) {
      if (isObject(element) ? unmatched.includes(element) : !a.has(element)) return pathSegment(PathStep.SET_ELEMENT, j);
      j++;
    }
    return undefined;
  }
}
