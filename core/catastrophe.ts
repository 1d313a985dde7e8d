// V8's catastrophic out-of-memory, as one isolate sees it: the signal that
// its heap is lost for good, which every operation on the isolate races,
// and the count of isolates this process has quarantined. Knows nothing of
// isolated-vm: the isolate host passes `raise` as its onCatastrophicError.

let quarantined = 0;

/**
 * Isolates V8 gave up on in this process (see `#catastrophe`). Each one keeps
 * the heap it had and one of isolated-vm's threads until the process ends.
 */
export function quarantinedIsolates(): number {
  return quarantined;
}

/**
 * V8's verdict that an isolate's heap is lost for good. Some allocations (a
 * hash table's backing store grown past the limit: a Map, a Set, an object
 * used as a dictionary) make V8 declare the heap lost instead of failing the
 * allocation. Without `onCatastrophicError` isolated-vm then aborts the whole
 * process, and every service with it; with it, the isolate's thread is parked
 * for good and the process lives on. Nothing the isolate was running will
 * ever settle, so every operation on it races `settled`.
 */
export class Catastrophe {
  message: string | undefined;
  readonly settled: Promise<never>;
  #reject: ((err: Error) => void) | undefined;
  #listener: ((message: string) => void) | undefined;

  constructor() {
    this.settled = new Promise<never>((_, reject) => (this.#reject = reject));
    // Nobody may be racing it when it happens.
    this.settled.catch(() => undefined);
  }

  readonly raise = (message: string): void => {
    if (this.message !== undefined) return;
    this.message = message;
    quarantined++;
    this.#reject?.(new Error(`V8 gave up on the isolate: ${message}`));
    this.#listener?.(message);
  };

  onRaise(listener: (message: string) => void): void {
    this.#listener = listener;
  }

  race<T>(op: Promise<T>): Promise<T> {
    return Promise.race([op, this.settled]);
  }
}

/** Boots an isolate, runs the guest runtime and the service's bundle in it, and activates the service. */
