// How a place inside a service's state is written in an error: the way a
// reader would reach it in code, `state.sessions.get("ada").joined`. The
// guest's plain-data check (guest/plain-state.ts) and the kernel's
// round-trip check (core/state-diff.ts) name what they find the same way.
// Bundled into every isolate, so it uses nothing but ECMAScript.

/** How a step of the path goes down: a property or an index, a Map's value, a Map's key, a Set's element. */
export const PathStep = { PROPERTY: 0, MAP_VALUE: 1, MAP_KEY: 2, SET_ELEMENT: 3 } as const;
export type PathStep = (typeof PathStep)[keyof typeof PathStep];

/**
 * One step of a path. A Map's value is named by its key when the key is a
 * string, number or boolean; a Map's key and a Set's element by their
 * position in iteration order, since they have no name of their own.
 */
export function pathSegment(step: PathStep, key: unknown): string {
  if (step === PathStep.SET_ELEMENT) return `.values()[${String(key)}]`;
  if (step === PathStep.MAP_KEY) return `.keys()[${String(key)}]`;
  if (step === PathStep.MAP_VALUE) {
    return `.get(${typeof key === "string" ? quote(key) : typeof key === "number" || typeof key === "boolean" ? String(key) : "…"})`;
  }
  if (typeof key === "number") return `[${key}]`;
  const name = String(key);
  return /^[A-Za-z_$][\w$]{0,63}$/.test(name) ? `.${name}` : `[${quote(name)}]`;
}

/** A key as a string literal, cut short: a path names where, it need not carry a megabyte key. */
function quote(key: string): string {
  return JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key);
}
