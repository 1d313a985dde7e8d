// Formats console arguments into one line of text, the way a developer
// expects from Node's console: strings as they are, everything else shown
// readably, cycles and errors included. The text is all that leaves the
// isolate, so nothing here may throw on a hostile value.

const MAX_DEPTH = 4;
const MAX_ITEMS = 50;

export function formatArgs(args: readonly unknown[]): string {
  return args.map((a) => (typeof a === "string" ? a : inspect(a, 0, new Set()))).join(" ");
}

export function inspect(value: unknown, depth: number, seen: Set<object>): string {
  try {
    return show(value, depth, seen);
  } catch {
    return "[uninspectable]";
  }
}

function show(value: unknown, depth: number, seen: Set<object>): string {
  switch (typeof value) {
    case "string":
      return depth === 0 ? value : JSON.stringify(value);
    case "number":
      return Object.is(value, -0) ? "-0" : String(value);
    case "bigint":
      return `${value}n`;
    case "boolean":
    case "undefined":
      return String(value);
    case "symbol":
      return value.toString();
    case "function":
      return `[Function: ${value.name || "(anonymous)"}]`;
  }
  if (value === null) return "null";
  const obj = value as object;
  if (obj instanceof Error) return obj.stack ?? `${obj.name}: ${obj.message}`;
  if (seen.has(obj)) return "[Circular]";
  if (depth >= MAX_DEPTH) return Array.isArray(obj) ? "[Array]" : "[Object]";
  seen.add(obj);
  try {
    const next = (v: unknown): string => show(v, depth + 1, seen);
    if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? "Invalid Date" : obj.toISOString();
    if (obj instanceof RegExp) return String(obj);
    if (obj instanceof Map) {
      const items = [...obj].slice(0, MAX_ITEMS).map(([k, v]) => `${next(k)} => ${next(v)}`);
      return `Map(${obj.size}) {${items.length ? ` ${items.join(", ")} ` : ""}}`;
    }
    if (obj instanceof Set) {
      const items = [...obj].slice(0, MAX_ITEMS).map(next);
      return `Set(${obj.size}) {${items.length ? ` ${items.join(", ")} ` : ""}}`;
    }
    if (ArrayBuffer.isView(obj)) {
      const bytes = new Uint8Array(obj.buffer, obj.byteOffset, Math.min(obj.byteLength, MAX_ITEMS));
      return `${obj.constructor.name}(${obj.byteLength}) [ ${[...bytes].join(", ")} ]`;
    }
    if (Array.isArray(obj)) {
      const items = obj.slice(0, MAX_ITEMS).map(next);
      if (obj.length > MAX_ITEMS) items.push(`... ${obj.length - MAX_ITEMS} more`);
      return `[ ${items.join(", ")} ]`;
    }
    const keys = Object.keys(obj);
    const items = keys.slice(0, MAX_ITEMS).map((k) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${next((obj as Record<string, unknown>)[k])}`);
    if (keys.length > MAX_ITEMS) items.push(`... ${keys.length - MAX_ITEMS} more`);
    return items.length === 0 ? "{}" : `{ ${items.join(", ")} }`;
  } finally {
    seen.delete(obj);
  }
}
