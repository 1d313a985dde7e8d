// URL and URLSearchParams for a bare V8 isolate.
//
// The parser is whatwg-url-minimum, a compact port of the reference
// implementation (jsdom's whatwg-url) that passes the Web Platform Tests for
// URL parsing and setters, UTS #46 host mapping included, at about 29 KB
// minified. The full whatwg-url is about 480 KB minified (its tr46 tables and
// byte helpers), too much for every isolate to compile at boot; core-js-pure's
// URL is about 49 KB and maps hosts incompletely (no UTS #46 mapping or
// normalization, so "a\u0301.com" and "\u210c.com" get the wrong punycode).
//
// Two things in whatwg-url-minimum 0.2.0 are wrong and are replaced here.
// It decodes queries through decodeURIComponent and, when a run of
// percent-escapes is not valid UTF-8, turns the whole run into U+FFFD
// characters, losing valid escapes next to the bad ones ("%E9%20" comes out
// without its space). And its iterators hand out the [name, value] arrays of
// its own list. The subclasses below parse application/x-www-form-urlencoded
// strings by the URL Standard, keep a URL and its searchParams in step
// themselves, and iterate over copies.

// This import must stay first: base64.ts lends the global atob that the URL
// package needs while its module is evaluated (imports run in order).
import { returnLentAtob } from "./base64.ts";
import { TextDecoder, TextEncoder } from "./encoding.ts";
import { URL as BaseURL, URLSearchParams as BaseURLSearchParams } from "whatwg-url-minimum";

// The package has now loaded, so the borrowed atob can go; the runtime
// decides for itself which globals a service sees.
returnLentAtob();

const encoder = new TextEncoder();
// "UTF-8 decode without BOM": a leading U+FEFF is kept, bad bytes become U+FFFD.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  return -1;
}

/** The URL Standard's "percent-decode", then UTF-8 decode without BOM. */
function percentDecode(s: string): string {
  if (s.indexOf("%") < 0) return s;
  const bytes = encoder.encode(s);
  const out = new Uint8Array(bytes.length);
  let w = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (b === 0x25 && i + 2 < bytes.length) {
      const hi = hexValue(bytes[i + 1] as number);
      const lo = hexValue(bytes[i + 2] as number);
      if (hi >= 0 && lo >= 0) {
        out[w++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
    }
    out[w++] = b;
  }
  return decoder.decode(out.subarray(0, w));
}

/** The URL Standard's application/x-www-form-urlencoded parser. */
function parseUrlencoded(input: string): Array<[string, string]> {
  const list: Array<[string, string]> = [];
  for (const sequence of input.split("&")) {
    if (sequence === "") continue;
    const eq = sequence.indexOf("=");
    const name = eq < 0 ? sequence : sequence.slice(0, eq);
    const value = eq < 0 ? "" : sequence.slice(eq + 1);
    list.push([percentDecode(name.replace(/\+/g, " ")), percentDecode(value.replace(/\+/g, " "))]);
  }
  return list;
}

/** WebIDL's USVString conversion: lone surrogates become U+FFFD. */
function toUSVString(value: unknown): string {
  return String(value).replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");
}

const baseSearch = Object.getOwnPropertyDescriptor(BaseURL.prototype, "search") as PropertyDescriptor;
const baseHref = Object.getOwnPropertyDescriptor(BaseURL.prototype, "href") as PropertyDescriptor;
const setBaseSearch = baseSearch.set as (this: BaseURL, value: string) => void;
const setBaseHref = baseHref.set as (this: BaseURL, value: string) => void;
const getBaseSearch = baseSearch.get as (this: BaseURL) => string;
const getBaseHref = baseHref.get as (this: BaseURL) => string;

type SearchParamsInit = string | Iterable<Iterable<string>> | Record<string, string> | URLSearchParams;

// Set in URLSearchParams's static block, so URL can reach its private state.
let linkParams: (url: URL, list: Array<[string, string]>) => URLSearchParams;
let replaceParams: (params: URLSearchParams, list: Array<[string, string]>) => void;

export class URLSearchParams extends BaseURLSearchParams {
  // The URL whose query this object mirrors, for url.searchParams.
  #url: URL | null = null;

  constructor(init?: SearchParamsInit) {
    // Objects and iterables go to the package as they are; a string (or
    // anything else WebIDL turns into one) is parsed here.
    if (init === undefined || (typeof init === "object" && init !== null) || typeof init === "function") {
      super(init as ConstructorParameters<typeof BaseURLSearchParams>[0]);
    } else {
      const s = toUSVString(init);
      super(parseUrlencoded(s.startsWith("?") ? s.slice(1) : s));
    }
  }

  static {
    linkParams = (url, list) => {
      const params = new URLSearchParams(list);
      params.#url = url;
      return params;
    };
    replaceParams = (params, list) => params.#replace(list);
  }

  // The package's iterators hand out its own [name, value] arrays, so a
  // caller writing to a pair would change the list behind the URL's back;
  // these yield copies, still walking the live list as the standard says.
  override *entries(): Generator<[string, string], undefined, unknown> {
    for (const [name, value] of super.entries() as Iterable<[string, string]>) yield [name, value];
  }

  override [Symbol.iterator](): Generator<[string, string], undefined, unknown> {
    return this.entries();
  }

  override append(name: string, value: string): void {
    super.append(name, value);
    this.#update();
  }

  override delete(name: string, value?: string): void {
    if (value === undefined) super.delete(name);
    else super.delete(name, value);
    this.#update();
  }

  override set(name: string, value: string): void {
    super.set(name, value);
    this.#update();
  }

  override sort(): void {
    super.sort();
    this.#update();
  }

  /** The URL Standard's "update steps": the URL's query follows the list. */
  #update(): void {
    if (this.#url === null) return;
    // Serialized form data only holds characters the query state leaves
    // alone, so the package's search setter stores it unchanged; "" clears it.
    setBaseSearch.call(this.#url, this.toString());
  }

  /** Replaces the list without touching the URL, which already agrees. */
  #replace(list: Array<[string, string]>): void {
    for (const name of new Set(this.keys() as Iterable<string>)) super.delete(name);
    for (const [name, value] of list) super.append(name, value);
  }
}

export class URL extends BaseURL {
  #searchParams: URLSearchParams | null = null;

  static override parse(input: string | URL, base?: string | URL): URL | null {
    try {
      return base === undefined ? new URL(input) : new URL(input, base);
    } catch {
      return null;
    }
  }

  override get searchParams(): URLSearchParams {
    this.#searchParams ??= linkParams(this, parseUrlencoded(getBaseSearch.call(this).slice(1)));
    return this.#searchParams;
  }

  override get search(): string {
    return getBaseSearch.call(this);
  }

  override set search(value: string) {
    setBaseSearch.call(this, value);
    if (this.#searchParams === null) return;
    // The standard parses the given value, not the URL's encoded query.
    const input = toUSVString(value);
    replaceParams(this.#searchParams, input === "" ? [] : parseUrlencoded(input.startsWith("?") ? input.slice(1) : input));
  }

  override get href(): string {
    return getBaseHref.call(this);
  }

  override set href(value: string) {
    setBaseHref.call(this, value);
    if (this.#searchParams !== null) {
      replaceParams(this.#searchParams, parseUrlencoded(getBaseSearch.call(this).slice(1)));
    }
  }
}
