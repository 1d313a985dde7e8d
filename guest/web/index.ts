// The web globals a bare V8 isolate lacks, written in plain ECMAScript so
// they bundle into the guest runtime. Importing this module changes no
// globals; the runtime installs what it chooses.

export {
  TextDecoder,
  TextEncoder,
  type TextDecodeOptions,
  type TextDecoderOptions,
  type TextEncoderEncodeIntoResult,
} from "./encoding.ts";
export { atob, base64ToBytes, btoa, bytesToBase64, DOMException } from "./base64.ts";
export { URL, URLSearchParams } from "./url.ts";
export {
  Headers,
  normalizeFetchInit,
  Response,
  type BodyInit,
  type HeadersInit,
  type NormalizedFetchInit,
  type RequestInfoLike,
  type RequestInitLike,
  type RequestLike,
  type ResponseInit,
} from "./fetch-types.ts";
