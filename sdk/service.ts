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
}

/** Gives a service definition its types; the object is returned unchanged. */
export function defineService<State, Config = unknown>(
  definition: ServiceDefinition<State, Config>,
): ServiceDefinition<State, Config> {
  return definition;
}
