// What a synchronous call throws, by code: tests assert codes, never messages.

/** The code a synchronous call throws with, or "returned" when it does not throw. */
export function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
  return "returned";
}
