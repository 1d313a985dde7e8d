// The timers of one instance, driven by the host: a guest's setTimeout and
// setInterval become host timers that fire the guest's callback through a
// crossing. Every pending timer costs host memory outside the isolate's
// heap, so their number is capped (`limits.timers`): the guest runtime
// throws ERR_LIMIT itself, and this is the check that counts, for a guest
// that went around its own runtime. Knows nothing of isolated-vm.

export interface GuestTimersOptions {
  service: string;
  /** Timers one instance may have pending at once. */
  limit: number;
  /** Runs the guest's callback of timer `id`; settles when that turn ends, never rejects. */
  fire: (id: number) => Promise<void>;
  /** Tells the service's console that a timer was refused (once a second at most). */
  warn: (text: string) => void;
}

export class GuestTimers {
  readonly #o: GuestTimersOptions;
  readonly #pending = new Map<number, NodeJS.Timeout>();
  /** Timers refused since the last warning. */
  #refused = 0;

  constructor(options: GuestTimersOptions) {
    this.#o = options;
  }

  set(id: number, ms: number, repeat: boolean): void {
    if (!Number.isInteger(id)) return;
    this.clear(id);
    if (this.#pending.size >= this.#o.limit) {
      if (this.#refused++ === 0) {
        this.#o.warn(`timer refused: ${this.#o.service} has ${this.#pending.size} pending (limits.timers)`);
        setTimeout(() => (this.#refused = 0), 1000).unref();
      }
      return;
    }
    // An interval whose callback is still running skips its next tick
    // rather than queueing firings behind it in the isolate.
    let running = false;
    const fire = (): void => {
      if (!repeat) this.#pending.delete(id);
      if (running) return;
      running = true;
      void this.#o.fire(id).finally(() => (running = false));
    };
    const delay = Math.min(Math.max(ms, 0), 2 ** 31 - 1);
    const handle = repeat ? setInterval(fire, Math.max(delay, 1)) : setTimeout(fire, delay);
    handle.unref();
    this.#pending.set(id, handle);
  }

  clear(id: number): void {
    const handle = this.#pending.get(id);
    if (handle !== undefined) clearTimeout(handle);
    this.#pending.delete(id);
  }

  /** Clears every pending timer (a stop, a dump that stops, a disposal). */
  clearAll(): void {
    for (const handle of this.#pending.values()) clearTimeout(handle);
    this.#pending.clear();
  }
}
