// A service's place in the kernel: its resolved config, its mailbox (which
// outlives instances), the instance currently behind the mailbox, and the
// record of how that instance came to be there.

import type { DeliveryKind } from "../protocol/wire.ts";
import type { Bundle } from "./bundle.ts";
import type { ResolvedService } from "./config.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import { Mailbox } from "./mailbox.ts";

export class Slot {
  readonly name: string;
  readonly spec: ResolvedService;
  readonly mailbox: Mailbox;
  bundle: Bundle | undefined;
  #instance: Instance | undefined;
  /** Why the service is down, when it is. */
  failure: MoltError | undefined;
  startedAt = 0;
  readonly restarts: number[] = [];

  constructor(spec: ResolvedService) {
    this.name = spec.name;
    this.spec = spec;
    this.mailbox = new Mailbox(spec.name, { concurrency: spec.concurrency, bound: spec.queue });
    // Nothing is delivered until the first instance is live.
    this.mailbox.pause();
  }

  get instance(): Instance | undefined {
    return this.#instance;
  }

  /** Points the mailbox at a new instance. Queued messages will go to it. */
  attach(instance: Instance): void {
    this.#instance = instance;
    this.failure = undefined;
    this.startedAt = Date.now();
  }

  detach(reason: MoltError): void {
    this.#instance = undefined;
    this.failure = reason;
  }

  /**
   * Queues one message. Size is checked against this service's
   * maxMessageBytes before anything is queued, so an oversized message costs
   * the receiver nothing.
   */
  deliver(kind: DeliveryKind, request: Uint8Array): Promise<Uint8Array | undefined> {
    const max = this.spec.limits.maxMessageBytes;
    if (request.byteLength > max) {
      return Promise.reject(
        new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `message of ${request.byteLength} bytes exceeds ${this.name}'s maxMessageBytes (${max})`, {
          service: this.name,
        }),
      );
    }
    return this.mailbox.push(() => {
      const instance = this.#instance;
      if (instance === undefined || instance.disposed) {
        throw (
          this.failure ??
          new MoltError(ErrorCode.SERVICE_DOWN, `${this.name} has no live instance`, { service: this.name })
        );
      }
      return instance.deliver(kind, request);
    });
  }
}
