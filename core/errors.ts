// The kernel's errors are the contract's (protocol/errors.ts): one class
// and one list of codes for the host and every isolate. Host code imports
// them from here, beside the rest of core/.

export {
  ERROR_CODE_PATTERN,
  ErrorCode,
  isSwapCode,
  MAX_CODE_CHARS,
  MAX_MESSAGE_CHARS,
  MoltError,
  toMoltError,
  type ErrorDetails,
} from "../protocol/errors.ts";
