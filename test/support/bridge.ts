// A bridge for an instance booted on its own, outside a kernel: no other
// service, no fetch, no storage; output and exits go nowhere.

import { ErrorCode, MoltError } from "../../core/errors.ts";
import type { InstanceBridge } from "../../core/instance.ts";
import { encodeErrorReply, encodeStorageFailure } from "../../core/wire.ts";

export const aloneBridge: InstanceBridge = {
  call: async () => encodeErrorReply(new MoltError(ErrorCode.NO_SERVICE, "this test runs no other service")),
  fetch: async () => encodeErrorReply(new MoltError(ErrorCode.PERMISSION, "this test grants no fetch")),
  send: () => undefined,
  console: () => undefined,
  stdout: () => undefined,
  exited: () => undefined,
  stalled: () => undefined,
  storage: () => encodeStorageFailure(ErrorCode.STORAGE_FAILED, "this test runs without storage"),
};
