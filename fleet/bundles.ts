// Fetching a bundle from the fleet's object store without a consumer.
//
// The object store client's getBlob creates an ordered consumer per read:
// after a broadcast at 5,000 runtimes the server held thousands of them and
// a gigabyte, and at 20,000 consumer creation timed out and swaps failed.
// A bundle is tens of KB, one or a few of the store's chunks, so it is read
// here with direct gets instead: one for the object's metadata, one per
// chunk. A direct get is a plain request the stream answers (the object
// store's stream allows direct access), with nothing created on the server.
//
// The layout read is the object store's own (NATS ADR-20): metadata as JSON
// on `$O.<bucket>.M.<base64url(name)>`, the content in order on
// `$O.<bucket>.C.<nuid>`. An object this reader does not understand (a link,
// a layout it cannot follow) is read with getBlob, as before.

import type { DirectStreamAPI } from "@nats-io/jetstream";
import { Base64UrlPaddedCodec, type ObjectStore } from "@nats-io/obj";
import { ErrorCode, MoltError } from "../core/errors.ts";
import { Bucket } from "./protocol.ts";

/** The fields of an object's metadata record that a read needs. */
interface ObjectMeta {
  nuid?: unknown;
  size?: unknown;
  chunks?: unknown;
  deleted?: unknown;
  options?: { link?: unknown };
}

/** The bytes of a bundle by its content hash, or null when the store has none. */
export async function fetchBundleBytes(direct: DirectStreamAPI, store: ObjectStore, hash: string): Promise<Uint8Array | null> {
  const stream = `OBJ_${Bucket.bundles}`;
  let meta: ObjectMeta;
  try {
    const found = await direct.getMessage(stream, { last_by_subj: `$O.${Bucket.bundles}.M.${Base64UrlPaddedCodec.encode(hash)}` });
    if (found === null) return null;
    meta = JSON.parse(new TextDecoder().decode(found.data)) as ObjectMeta;
  } catch (cause) {
    throw new MoltError(ErrorCode.FLEET, `cannot read bundle ${hash.slice(0, 12)} from the fleet: ${(cause as Error).message}`, { cause });
  }
  if (meta.deleted === true) return null;
  const { nuid, size, chunks } = meta;
  if (meta.options?.link !== undefined || typeof nuid !== "string" || typeof size !== "number" || typeof chunks !== "number") {
    return store.getBlob(hash);
  }

  const bytes = new Uint8Array(size);
  const subject = `$O.${Bucket.bundles}.C.${nuid}`;
  let offset = 0;
  let seq = 0;
  try {
    for (let i = 0; i < chunks; i++) {
      const chunk = await direct.getMessage(stream, { seq: seq + 1, next_by_subj: subject });
      if (chunk === null || offset + chunk.data.byteLength > size) break;
      bytes.set(chunk.data, offset);
      offset += chunk.data.byteLength;
      seq = chunk.seq;
    }
  } catch (cause) {
    throw new MoltError(ErrorCode.FLEET, `cannot read bundle ${hash.slice(0, 12)} from the fleet: ${(cause as Error).message}`, { cause });
  }
  // A short read means the object changed under the reader (rewritten or
  // purged); the caller's hash check would fail, so say what happened.
  if (offset !== size) throw new MoltError(ErrorCode.CORRUPT, `bundle ${hash.slice(0, 12)} in the fleet's object store is incomplete`);
  return bytes;
}
