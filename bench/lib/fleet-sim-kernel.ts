// The kernel a simulated runtime gives its fleet member in bench:fleet-scale:
// what fleet/member.ts may ask of a kernel (MemberKernel), with no isolates
// behind it. A swap sleeps a configurable time and then reports the new
// version as running; nothing else of a swap happens. It exists so that tens
// of thousands of real FleetMembers (subjects, heartbeats, reconcile, swap
// requests, bundle fetches) fit in a few processes.

import type { Bundle } from "../../core/bundle.ts";
import { ErrorCode, MoltError } from "../../core/errors.ts";
import { Outcome, Via, type VersionRecord } from "../../core/inventory.ts";
import type { RemoteServices } from "../../core/router.ts";
import { encodeOkReply } from "../../core/wire.ts";
import type { MemberKernel } from "../../fleet/member.ts";
import type { ServiceStatus, SwapReport } from "../../protocol/admin.ts";

/** What a real kernel would read off a version's module when it boots it; the stub is told instead. */
export interface SimVersion {
  hash: string;
  semver: string;
  stateVersion: number;
  fixes: string[];
}

/**
 * Shared by every stub kernel of one process: what each version declares
 * (the bench tells it, as no module is ever evaluated), and bundles by
 * content hash. A stub hands a bundle out only for a version that ran on it,
 * so a member fetches from the fleet's object store exactly when a real
 * runtime would.
 */
export class BundleShelf {
  readonly #versions = new Map<string, SimVersion>();
  readonly #code = new Map<string, Bundle>();

  constructor(versions: readonly SimVersion[]) {
    for (const v of versions) this.#versions.set(v.hash, v);
  }

  describe(hash: string): SimVersion {
    return this.#versions.get(hash) ?? { hash, semver: "0.0.0-unknown", stateVersion: 1, fixes: [] };
  }

  keep(bundle: Bundle): void {
    if (!this.#code.has(bundle.hash)) this.#code.set(bundle.hash, bundle);
  }

  get(hash: string): Bundle | undefined {
    return this.#code.get(hash);
  }
}

export interface StubKernelOptions {
  /** The services it runs, all starting on version `initial`, from `entry`. */
  services: readonly string[];
  initial: string;
  entry: string;
  /** How long a swap takes, in ms. */
  swapMs: number;
  shelf: BundleShelf;
}

export class StubKernel implements MemberKernel {
  readonly #swapMs: number;
  readonly #shelf: BundleShelf;
  readonly #histories = new Map<string, VersionRecord[]>();
  readonly #swapping = new Set<string>();
  readonly #startedAt = Date.now();
  /** Swaps this kernel committed (for the bench's own bookkeeping). */
  swaps = 0;

  constructor(options: StubKernelOptions) {
    this.#swapMs = options.swapMs;
    this.#shelf = options.shelf;
    const at = new Date().toISOString();
    for (const service of options.services) {
      this.#histories.set(service, [record(service, 1, this.#shelf.describe(options.initial), options.entry, null, Via.START, at)]);
    }
  }

  useRemote(_remote: RemoteServices | undefined): void {
    // A simulated runtime calls no service on another runtime.
  }

  has(service: string): boolean {
    return this.#histories.has(service);
  }

  running(service: string): string | null {
    return this.#current(service).version;
  }

  history(service: string): readonly VersionRecord[] {
    return this.#histories.get(service) ?? [];
  }

  recorded(service: string, version: string): VersionRecord | undefined {
    return this.history(service).find((r) => r.version === version || r.version.startsWith(version));
  }

  status(): ServiceStatus[] {
    return [...this.#histories.keys()].map((name) => {
      const current = this.#current(name);
      return {
        name,
        state: "running",
        version: current.version,
        semver: current.semver,
        stateVersion: current.stateVersion,
        fixes: [...(current.fixes ?? [])],
        uptimeMs: Date.now() - this.#startedAt,
        queueDepth: 0,
        inFlight: 0,
        paused: this.#swapping.has(name),
        restarts: 0,
        isolation: "isolate",
        error: null,
        lastSwap: current.via === Via.START ? null : current,
      };
    });
  }

  /** A call from another runtime: answered at once with null (the bench makes none). */
  deliver(service: string): Promise<Uint8Array | undefined> {
    if (!this.has(service)) return Promise.reject(new MoltError(ErrorCode.NO_SERVICE, `no service "${service}"`));
    return Promise.resolve(encodeOkReply(null));
  }

  async swapBundle(service: string, bundle: Bundle, via: Via = Via.SWAP): Promise<SwapReport> {
    const history = this.#histories.get(service);
    if (history === undefined) throw new MoltError(ErrorCode.NO_SERVICE, `no service "${service}"`, { service });
    if (this.#swapping.has(service)) throw new MoltError(ErrorCode.SWAP_BUSY, `${service} is swapping already`, { service });
    this.#swapping.add(service);
    try {
      await sleep(this.#swapMs);
    } finally {
      this.#swapping.delete(service);
    }
    const from = this.#current(service);
    const at = new Date().toISOString();
    from.replacedAt = at;
    history.push(record(service, history.length + 1, this.#shelf.describe(bundle.hash), bundle.entry, from.version, via, at));
    this.#shelf.keep(bundle);
    this.swaps++;
    const info = (r: { version: string; semver: string; stateVersion: number }): SwapReport["from"] => ({
      version: r.version,
      semver: r.semver,
      stateVersion: r.stateVersion,
    });
    return { service, outcome: "committed", via, from: info(from), to: info(history[history.length - 1] as VersionRecord), blackoutMs: this.#swapMs, phases: {} };
  }

  /** The bundle of a version that ran here; ERR_NO_VERSION otherwise, so the member fetches it from the fleet. */
  storedBundle(version: string, entry: string): Bundle {
    const ran = [...this.#histories.values()].some((h) => h.some((r) => r.version === version));
    const bundle = ran ? this.#shelf.get(version) : undefined;
    if (bundle === undefined) throw new MoltError(ErrorCode.NO_VERSION, `version ${version.slice(0, 12)} is not stored here`);
    return { ...bundle, entry };
  }

  #current(service: string): VersionRecord {
    const current = this.#histories.get(service)?.at(-1);
    if (current === undefined) throw new MoltError(ErrorCode.NO_SERVICE, `no service "${service}"`, { service });
    return current;
  }
}

function record(service: string, seq: number, v: SimVersion, entry: string, parent: string | null, via: Via, at: string): VersionRecord {
  return {
    seq,
    service,
    version: v.hash,
    semver: v.semver,
    stateVersion: v.stateVersion,
    ...(v.fixes.length === 0 ? {} : { fixes: [...v.fixes] }),
    entry,
    parent,
    via,
    requestedAt: at,
    startedAt: at,
    replacedAt: null,
    outcome: Outcome.LIVE,
  };
}

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}
