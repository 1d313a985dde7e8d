// Whether a state can be handed to another version as it is. A dump keeps
// data, not behaviour: msgpack writes a class instance as a plain object,
// so the next version would get the fields without the methods, and every
// handler that calls one would then fail. The guest runtime checks each
// dump with this and refuses one that holds such an object, naming where.
// The same walk can also tell whether any object in the state is reached
// twice (held in two places, or in a cycle), which decides how the dump is
// encoded (guest/dump-codec.ts).

import { PathStep, pathSegment } from "../protocol/state-path.ts";

// Captured when the runtime script runs, before any service code exists.
const getPrototypeOf = Object.getPrototypeOf;
const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
const objectKeys = Object.keys;
const isArray = Array.isArray;
const reflectApply = Reflect.apply;
const bind = Function.prototype.bind;
const setHas = Set.prototype.has;
const setAdd = Set.prototype.add;
const mapForEach = Map.prototype.forEach;
const setForEach = Set.prototype.forEach;
const OBJECT_PROTOTYPE = Object.prototype;
const ARRAY_PROTOTYPE = Array.prototype;
const MAP_PROTOTYPE = Map.prototype;
const SET_PROTOTYPE = Set.prototype;

const TypedArray = getPrototypeOf(Uint8Array) as { prototype: object };

/** Prototypes of objects a dump carries whole (ECMAScript's own data types), whose contents need no look. */
const LEAF_PROTOTYPES: ReadonlySet<object> = new Set<object>([
  Date.prototype,
  RegExp.prototype,
  ArrayBuffer.prototype,
  DataView.prototype,
  TypedArray.prototype,
  ...[Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array].map(
    (array) => array.prototype as object,
  ),
  ...[Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError].map((error) => error.prototype as object),
]);

/** How a step of the path goes down: a property or an index, a Map's value, a Map's key, a Set's element. */
const { PROPERTY, MAP_VALUE, MAP_KEY, SET_ELEMENT } = PathStep;

/** Where a non-plain object was found, and the name of its class. */
export interface NonPlain {
  path: string;
  className: string;
}

/**
 * The first object in `value` that a dump would not carry faithfully: one
 * whose prototype is not Object's, Array's, Map's, Set's, null or one of the
 * data types above (a class instance, a subclass of Map, a boxed number, a
 * promise). `root` names `value` in the path.
 */
export function findNonPlain(value: unknown, root: string): NonPlain | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  try {
    return walk(value, root, undefined).nonPlain;
  } catch (err) {
    if (err !== TOO_MANY_VISITS) throw err;
    return walk(value, root, new Set()).nonPlain;
  }
}

/** What `inspectState` found. */
export interface StateShape {
  nonPlain: NonPlain | undefined;
  /** Whether an object is reached more than once, through two references or a cycle (as far as the walk went). */
  shared: boolean;
}

/**
 * findNonPlain's answer, and whether any object in `value` is reached
 * twice. It remembers every object, which costs a few times the walk
 * itself (see MAX_VISITS): what it buys is the one thing that tells two
 * references to an object from two objects.
 */
export function inspectState(value: unknown, root: string): StateShape {
  if (typeof value !== "object" || value === null) return { nonPlain: undefined, shared: false };
  return walk(value, root, new Set());
}

/**
 * Visits past which a walk without a set of seen objects starts again with
 * one. The walk runs in a swap's blackout: remembering every object costs
 * more than visiting it (a Set of a few hundred thousand objects, several
 * times the walk itself), so a cycle is caught by looking up the path
 * instead, and an object reached twice is looked at twice. Only a state
 * whose objects are shared many times over reaches this budget.
 */
const MAX_VISITS = 8_000_000;
const TOO_MANY_VISITS = Symbol("too many visits");

/** The walk itself; with `seen`, each object is looked at once, and one reached again makes the state shared. */
function walk(value: object, root: string, seen: Set<object> | undefined): StateShape {
  // The way down to the object being looked at: the objects (for cycles),
  // and the raw keys, formatted only when something is found, so a state
  // that is all plain data builds no path.
  const objects: object[] = [];
  const keys: unknown[] = [];
  const kinds: PathStep[] = [];
  let visits = 0;
  let found: string | undefined;
  let shared = false;
  // Bound once and called directly: Reflect.apply on every object costs more
  // than the lookup itself until V8 has optimized the walk, and a dump in a
  // blackout often runs before it has.
  const has = seen === undefined ? undefined : (reflectApply(bind, setHas, [seen]) as (v: object) => boolean);
  const add = seen === undefined ? undefined : (reflectApply(bind, setAdd, [seen]) as (v: object) => unknown);

  // Called only for objects: most values in a state are primitives, and
  // they cost nothing here beyond their typeof.
  const visit = (v: object): boolean => {
    if (has !== undefined && add !== undefined) {
      if (has(v)) {
        shared = true;
        return false;
      }
      add(v);
    } else {
      if (++visits > MAX_VISITS) throw TOO_MANY_VISITS;
      for (let i = objects.length - 1; i >= 0; i--) if (objects[i] === v) return false;
    }
    objects.push(v);
    const hit = look(v);
    if (!hit) objects.pop();
    return hit;
  };
  const look = (v: object): boolean => {
    const prototype = getPrototypeOf(v) as object | null;
    if (prototype === OBJECT_PROTOTYPE || prototype === null) {
      const names = objectKeys(v);
      for (let i = 0; i < names.length; i++) {
        const key = names[i] as string;
        const child = (v as Record<string, unknown>)[key];
        if (typeof child === "object" && child !== null && down(PROPERTY, key, child)) return true;
      }
      return false;
    }
    if (prototype === ARRAY_PROTOTYPE && isArray(v)) {
      const array = v as unknown[];
      for (let i = 0; i < array.length; i++) {
        const child = array[i];
        if (typeof child === "object" && child !== null && down(PROPERTY, i, child)) return true;
      }
      return false;
    }
    if (prototype === MAP_PROTOTYPE) {
      let hit = false;
      let i = 0;
      reflectApply(mapForEach, v, [
        (entry: unknown, key: unknown) => {
          if (hit) return;
          if (typeof key === "object" && key !== null) hit = down(MAP_KEY, i, key);
          if (!hit && typeof entry === "object" && entry !== null) hit = down(MAP_VALUE, key, entry);
          i++;
        },
      ]);
      return hit;
    }
    if (prototype === SET_PROTOTYPE) {
      let hit = false;
      let i = 0;
      reflectApply(setForEach, v, [
        (element: unknown) => {
          if (!hit && typeof element === "object" && element !== null) hit = down(SET_ELEMENT, i, element);
          i++;
        },
      ]);
      return hit;
    }
    if (LEAF_PROTOTYPES.has(prototype)) return false;
    found = classNameOf(prototype);
    return true;
  };
  const down = (kind: PathStep, key: unknown, v: object): boolean => {
    kinds.push(kind);
    keys.push(key);
    if (visit(v)) return true;
    kinds.pop();
    keys.pop();
    return false;
  };

  if (!visit(value) || found === undefined) return { nonPlain: undefined, shared };
  let path = root;
  for (let i = 0; i < keys.length; i++) path += pathSegment(kinds[i] as PathStep, keys[i]);
  return { nonPlain: { path, className: found }, shared };
}

/** The name a prototype's own `constructor` gives, read without running a getter. */
function classNameOf(prototype: object): string {
  const constructor = getOwnPropertyDescriptor(prototype, "constructor")?.value as unknown;
  const name = typeof constructor === "function" ? getOwnPropertyDescriptor(constructor, "name")?.value : undefined;
  return typeof name === "string" && name !== "" ? name : "an unnamed class";
}
