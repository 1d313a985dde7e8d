// fleet/connection.ts against a real nats-server: JetStream's failures are
// told apart by their codes, not their text — a bucket no runtime has made
// yet, and a compare-and-set that lost to another writer.

import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectFleet, isStaleRevision, openExistingStores, openStores } from "../../fleet/connection.ts";
import { readFleet } from "../../fleet/status.ts";
import { NatsServer } from "../support/nats.ts";

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

describe("the fleet's NATS connection", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await NatsServer.start();
    nc = await connectFleet({ servers: server.url, name: "test", waitOnFirstConnect: false });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("finds no stores before any runtime made them, and `molt fleet status` shows an empty fleet", async () => {
    expect(await openExistingStores(nc)).toBeNull();
    expect(await readFleet(server.url)).toMatchObject({ nodes: [], desired: {}, rollouts: {} });
  });

  it("tells a lost compare-and-set by JetStream's code: a create of a key that exists, an update from a stale revision", async () => {
    const { desired } = await openStores(nc);
    const revision = await desired.create("svc", new Uint8Array([1]));
    await desired.update("svc", new Uint8Array([2]), revision);
    expect(isStaleRevision(await failure(desired.create("svc", new Uint8Array([3]))))).toBe(true);
    expect(isStaleRevision(await failure(desired.update("svc", new Uint8Array([3]), revision)))).toBe(true);
    expect(isStaleRevision(new Error("wrong last sequence: 1"))).toBe(false);
    expect(await openExistingStores(nc)).not.toBeNull();
  });
});
