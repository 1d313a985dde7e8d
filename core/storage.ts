// A service's durable store (`ctx.storage`) as the kernel sees it: a handle
// per service that answers its instances' storage requests and says when
// the writes committed so far are durable. The kernel holds every reply and
// every call, send and fetch of the service until then (the output gate), so
// nothing a caller sees can depend on a write a crash would lose. The
// composition root chooses the implementation (core/lmdb-store.ts); the
// kernel knows only this.

import type { ResolvedService } from "./config.ts";

export interface ServiceStore {
  /**
   * Answers one storage request of an instance (protocol/storage.ts), at
   * once. `writable`: whether the instance asking is the one behind the
   * mailbox; a write from any other (a swap's new version before its
   * cutover, a rehearsal, a scratch copy) is refused with
   * ERR_STORAGE_READONLY and writes nothing. With `scratch` (a shadowing
   * instance, shadow.ts), reads see the store as it was when the scratch was
   * taken, and writes go to the scratch alone.
   */
  request(bytes: Uint8Array, writable: boolean, scratch?: StoreScratch): Uint8Array;
  /** A view of the store as it is now, for a shadow; closed when the shadow ends. */
  scratch(): StoreScratch;
  /**
   * Settles once every write committed so far is on disk; undefined when
   * none is waiting, so the hot path pays nothing. Rejects with
   * ERR_STORAGE_FAILED if one of them could not be written.
   */
  durable(): Promise<void> | undefined;
}

/** A shadow's private view of a store: what it was when taken, and the shadow's own writes. */
export interface StoreScratch {
  close(): void;
}

export interface StorageProvider {
  /**
   * The store of one service, opened now if it exists on disk (ERR_CORRUPT,
   * naming the file, when it is damaged or not molt's), or created on its
   * first write.
   */
  open(service: ResolvedService): ServiceStore;
  /** Waits for pending writes and closes every store. */
  close(): Promise<void>;
}
