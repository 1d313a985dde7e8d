// URL and URLSearchParams for a bare V8 isolate, from whatwg-url-minimum: a
// compact port of the reference implementation (jsdom's whatwg-url) that
// passes the Web Platform Tests for URL parsing, setters and URLSearchParams,
// UTS #46 host mapping included, at about 29 KB minified. The full whatwg-url
// is about 480 KB minified (its tr46 tables and byte helpers), too much for
// every isolate to compile at boot; see test/guest/web.test.ts for the checks
// against Node's own URL.

// This import must stay first: base64.ts lends the global atob that the URL
// package needs while its module is evaluated (imports run in order).
import { returnLentAtob } from "./base64.ts";
import { URL, URLSearchParams } from "whatwg-url-minimum";

// The package has now loaded, so the borrowed atob can go; the runtime
// decides for itself which globals a service sees.
returnLentAtob();

export { URL, URLSearchParams };
