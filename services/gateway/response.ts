// What the gateway checks of a service's answer before passing it on: the
// rules the HTTP ingress (core/http-ingress.ts, checkResponse) applies to
// whatever reaches it. The ingress stays the authority: it checks every
// answer again before writing a byte. The gateway checks first only so that
// an answer it cannot pass on is reported as the failure of the service
// that gave it, not of the gateway, which would otherwise be the one named
// and would count the request as answered.

/** An HTTP token (RFC 9110, 5.6.2): what a header name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A field value as Node writes it: no control characters but tab, nothing latin-1 cannot hold. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Why `answer` is not an HTTP response the ingress can write, or undefined if it is one. */
export function responseProblem(answer: unknown): string | undefined {
  if (typeof answer !== "object" || answer === null) return "with no { status, headers?, body? } object";
  const { status, body } = answer as { status?: unknown; body?: unknown };
  const headers = (answer as { headers?: unknown }).headers ?? {};
  if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) return "with no status from 200 to 599";
  if (!(body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array)) {
    return "with a body that is neither a string nor a Uint8Array";
  }
  if (typeof headers !== "object" || headers === null || Array.isArray(headers)) return "with headers that are not an object";
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (!TOKEN.test(name)) return "with a header name that is not an HTTP token";
    for (const item of Array.isArray(value) ? (value as unknown[]) : [value]) {
      const text = typeof item === "string" ? item : (typeof item === "number" && Number.isFinite(item)) || typeof item === "boolean" ? String(item) : undefined;
      if (text === undefined || !FIELD_VALUE.test(text)) return `with an invalid value for header ${name}`;
    }
  }
  return undefined;
}
