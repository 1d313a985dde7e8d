// The references the kernel hands to a freshly created isolate, and the typed
// wrappers the guest runtime calls them through. These are the guest's only
// way out of its isolate; they are held in closures, never on globalThis, so
// service code cannot reach the raw references.

/** The subset of isolated-vm's Reference API the guest uses. */
export interface Ref {
  apply(receiver: undefined, args: unknown[], options?: object): Promise<unknown>;
  applyIgnored(receiver: undefined, args: unknown[], options?: object): void;
  applySync(receiver: undefined, args: unknown[], options?: object): unknown;
}

export interface HostRefs {
  call: Ref;
  send: Ref;
  log: Ref;
  timer: Ref;
  random: Ref;
  now: Ref;
  fetch: Ref;
  stdout: Ref;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Host {
  call(binding: string, bytes: Uint8Array): Promise<Uint8Array>;
  send(binding: string, bytes: Uint8Array): void;
  log(level: LogLevel, text: string): void;
  setTimer(id: number, ms: number, repeat: boolean): void;
  clearTimer(id: number): void;
  random(n: number): Uint8Array;
  now(): number;
  fetch(bytes: Uint8Array): Promise<Uint8Array>;
  stdout(text: string): void;
}

const COPY_ARGS = { arguments: { copy: true } } as const;
const COPY_BOTH = { arguments: { copy: true }, result: { promise: true, copy: true } } as const;

export function wrapHost(refs: HostRefs): Host {
  const { call, send, log, timer, random, now, fetch, stdout } = refs;
  return {
    call: (binding, bytes) => call.apply(undefined, [binding, bytes], COPY_BOTH) as Promise<Uint8Array>,
    send: (binding, bytes) => send.applyIgnored(undefined, [binding, bytes], COPY_ARGS),
    log: (level, text) => log.applyIgnored(undefined, [level, text]),
    setTimer: (id, ms, repeat) => timer.applyIgnored(undefined, ["set", id, ms, repeat]),
    clearTimer: (id) => timer.applyIgnored(undefined, ["clear", id, 0, false]),
    random: (n) => random.applySync(undefined, [n], { result: { copy: true } }) as Uint8Array,
    now: () => now.applySync(undefined, []) as number,
    fetch: (bytes) => fetch.apply(undefined, [bytes], COPY_BOTH) as Promise<Uint8Array>,
    stdout: (text) => stdout.applyIgnored(undefined, [text]),
  };
}
