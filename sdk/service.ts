// The service contract: what a molt service module default-exports.
// This file is imported by service code (as "molt/service") and bundled into
// its isolate; it carries types and one identity helper, nothing that runs
// on the host.

/** A request as the HTTP ingress hands it to the service named in `http.service`. */
export interface HttpRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
}

/** The answer a `fetch` handler returns. */
export interface HttpResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array | null;
}

/** What a service's code may reach: its bindings, its config, and what its permissions grant. */
export interface ServiceContext<Config = unknown> {
  /** This service's name in the runtime's config. */
  readonly service: string;
  /** The running version: content hash of the bundle and the author's semver. */
  readonly version: { readonly id: string; readonly semver: string; readonly stateVersion: number };
  /** The `config` value given to this service in the runtime's config. */
  readonly config: Config;
  /** Request/response to another service through a declared binding. */
  call<T = unknown>(binding: string, method: string, payload?: unknown): Promise<T>;
  /** One-way message to another service through a declared binding. */
  send(binding: string, method: string, payload?: unknown): void;
  /** Environment variables named in `permissions.env`; any other name fails with ERR_PERMISSION. */
  readonly env: { get(name: string): string | undefined };
  /** Standard output, when `permissions.stdout` is granted; otherwise each write fails with ERR_PERMISSION. */
  readonly stdout: { write(text: string): void };
  /**
   * This service's durable key-value store, kept by the runtime outside the
   * isolate: a swap never moves it, and every version reads the same data.
   * Inside a handler the message is one transaction: its writes apply all
   * together when the handler returns (none if it throws), and its reply,
   * like every call or send after a write, is held until they are on disk.
   * `init`, `restore` and `start` only read (ERR_STORAGE_READONLY).
   */
  readonly storage: ServiceStorage;
}

/** Which entries `list` returns: keys in UTF-8 byte order, from `start` (included) to `end` (excluded). */
export interface StorageListOptions {
  prefix?: string;
  start?: string;
  end?: string;
  limit?: number;
  reverse?: boolean;
}

/**
 * Reads and writes of a service's store. Keys are strings of 1 to 1,024
 * UTF-8 bytes (ERR_BAD_KEY otherwise); values are anything a message can
 * carry (ERR_UNENCODABLE otherwise), at most `limits.maxMessageBytes` each;
 * the whole store at most `limits.storageMb` (ERR_STORAGE_FULL).
 */
export interface ServiceStorage {
  get<T = unknown>(key: string): Promise<T | undefined>;
  /** The keys that exist, with their values. */
  get<T = unknown>(keys: readonly string[]): Promise<Map<string, T>>;
  put(key: string, value: unknown): Promise<void>;
  put(entries: Readonly<Record<string, unknown>>): Promise<void>;
  /** Whether the key existed. */
  delete(key: string): Promise<boolean>;
  /** How many of the keys existed. */
  delete(keys: readonly string[]): Promise<number>;
  list<T = unknown>(options?: StorageListOptions): Promise<Map<string, T>>;
  /** Runs `run` as one transaction: its writes join the message's when it resolves, and none apply if it throws or rolls back. */
  transaction<T>(run: (txn: StorageTransaction) => T | Promise<T>): Promise<T>;
}

export interface StorageTransaction extends ServiceStorage {
  /** Drops this transaction's writes: none of them apply. */
  rollback(): void;
}

export type Handler<State, Config = unknown> = (
  state: State,
  payload: any,
  ctx: ServiceContext<Config>,
) => unknown;

export interface ServiceDefinition<State = any, Config = unknown> {
  /** The author's semver for this code. */
  version?: string;
  /** The schema version of the state this code holds. */
  stateVersion?: number;
  /**
   * The advisories this version fixes (free-form ids such as
   * "MOLT-2026-0001"): at most 64 ids of at most 128 characters each, else
   * the module fails to load with ERR_BAD_SERVICE. Cumulative by
   * declaration: a version is credited only with the ids it lists itself,
   * so a later version that still contains a fix lists it again. The
   * inventory, `molt status`, `molt history`, the fleet's heartbeats and
   * `molt fleet status --advisory` carry them.
   */
  fixes?: readonly string[];
  /** State versions `restore` accepts; default: only `stateVersion` (unless `restore` is given). */
  restoresFrom?: readonly number[];
  /**
   * How many handlers may run at once, when the service's config does not
   * say (default 1: handlers never interleave). A service whose handlers
   * keep nothing in its state across an `await`, such as a router waiting
   * on the service it forwards to, can take many, so that one slow request
   * does not hold up every other.
   */
  concurrency?: number;
  /** Builds the initial state of a fresh instance. */
  init?: (ctx: ServiceContext<Config>) => State | Promise<State>;
  /** Runs after init or restore, when the instance goes live: arm timers, subscriptions. */
  start?: (state: State, ctx: ServiceContext<Config>) => void | Promise<void>;
  handlers: Record<string, Handler<State, Config>>;
  /** Runs when the instance is drained: go quiet (flush, stop timers). */
  stop?: (state: State, ctx: ServiceContext<Config>) => void | Promise<void>;
  /** The value handed to the next version; default: the state itself. */
  dump?: (state: State) => unknown;
  /**
   * Builds this version's state from a dump taken at `fromStateVersion`; `ctx`
   * is this instance's context, as in init and start, so a migration can read
   * `ctx.config`. A swap runs it twice (a rehearsal on a copy of the state,
   * then the real one), so it should not call or send to other services.
   */
  restore?: (dumped: any, fromStateVersion: number, ctx: ServiceContext<Config>) => State | Promise<State>;
  /**
   * A stored value as this version reads it, when a version of another
   * stateVersion wrote it (newer, after a rollback, or older): called on
   * read, synchronously (it returns the value, not a promise), so a swap
   * never scans the store. Without it, values are read as they were written.
   */
  migrate?: (value: any, fromStateVersion: number, key: string) => unknown;
}

/** Gives a service definition its types; the object is returned unchanged. */
export function defineService<State, Config = unknown>(
  definition: ServiceDefinition<State, Config>,
): ServiceDefinition<State, Config> {
  return definition;
}
