// Shadow traffic (issue 17, item 2): before a swap's cutover the new version
// runs beside the old one on a copy of its state, and the next N messages go
// to both. The old version answers; a new version that answers differently
// is refused (ERR_SWAP_SHADOW) with nothing changed, and the new version
// has no side effects while it shadows: its calls and fetches are answered
// with what the old version's got, its sends, stdout, console lines and
// storage writes are never performed. Every effect is counted here at the
// place it would land (the downstream service, an HTTP server, the kernel's
// stdout, the store).

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { preview } from "../../core/shadow.ts";
import type { SwapOptions } from "../../core/swap.ts";
import type { MoltConfig } from "../../sdk/config.ts";
import type { SwapReport } from "../../protocol/admin.ts";
import { eventually, startKernel, type TestKernel } from "../support/kernel.ts";

const fixture = (t: TestKernel, name: string): string => `${t.kernel.config.dir}/shadow/${name}.ts`;
const TALLY: MoltConfig = {
  services: {
    tally: { entry: "./shadow/tally-v1.ts", bindings: { audit: "audit" } },
    audit: { entry: "./shadow/audit.ts" },
  },
};
const NAMES = ["ann", "bob", "cy"];

type Seen = { notes: { name: string; count: number; extra?: boolean }[]; pings: string[] };

const running: TestKernel[] = [];
afterEach(async () => {
  for (const t of running.splice(0)) await t.kernel.stop();
});

async function start(config: MoltConfig = TALLY): Promise<TestKernel> {
  const t = await startKernel(config);
  running.push(t);
  return t;
}

/**
 * Callers of tally in the background, until stopped: `add`s and `greet`s
 * to a few names, one message at a time each, counted once answered.
 */
class Traffic {
  adds = 0;
  greets = 0;
  readonly failures: unknown[] = [];
  #stopped = false;
  readonly #callers: Promise<void>[];

  constructor(t: TestKernel, callers = 2) {
    this.#callers = Array.from({ length: callers }, (_, c) => this.#run(t, c));
  }

  async #run(t: TestKernel, caller: number): Promise<void> {
    for (let i = caller; !this.#stopped; i++) {
      const name = NAMES[i % NAMES.length] as string;
      try {
        if (i % 3 === 2) {
          expect(await t.kernel.call("tally", "greet", name)).toMatch(/^(hello|hi) /);
          this.greets++;
        } else {
          await t.kernel.call("tally", "add", name);
          this.adds++;
        }
      } catch (err) {
        this.failures.push(err);
      }
      // Its turn to others: the loop must not hold the event loop.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Stops the callers and waits for their last messages' answers. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#callers);
    expect(this.failures).toEqual([]);
  }
}

/** A swap of tally under background traffic; the traffic stops once the swap has ended. */
async function swapUnderTraffic(t: TestKernel, entry: string, options: SwapOptions): Promise<{ report: SwapReport; traffic: Traffic }> {
  const traffic = new Traffic(t);
  try {
    return { report: await t.kernel.swap("tally", entry, options), traffic };
  } finally {
    await traffic.stop();
  }
}

/**
 * A swap whose shadow sees exactly `messages`: they are sent once prepare
 * has ended, when the shadow has the mailbox held to copy the state, so
 * they are the next messages it runs, all of them, in this order.
 */
async function swapWith(
  t: TestKernel,
  service: string,
  entry: string,
  options: SwapOptions,
  messages: [method: string, payload: unknown][],
): Promise<{ report: SwapReport; replies: unknown[] }> {
  let sent: Promise<unknown[]> | undefined;
  const report = await t.kernel.swap(service, entry, {
    ...options,
    onPhase: (phase) => {
      if (phase !== "prepare") return;
      // After this turn: the swap goes on synchronously to hold the mailbox for the shadow's copy of the state.
      sent = new Promise((resolve) => setImmediate(resolve)).then(() => Promise.all(messages.map(([method, payload]) => t.kernel.call(service, method, payload))));
    },
  });
  return { report, replies: sent === undefined ? [] : await sent };
}

/** What audit was told, once every `add` the callers sent has reached it, call and send. */
async function seenByAudit(t: TestKernel, adds: number): Promise<Seen> {
  // A send is one-way: the last ones may still be on their way.
  await eventually(async () => expect(((await t.kernel.call("audit", "seen")) as Seen).pings.length).toBeGreaterThanOrEqual(adds));
  return (await t.kernel.call("audit", "seen")) as Seen;
}

describe("shadow traffic", () => {
  it("refuses a v2 that diverges on one method with ERR_SWAP_SHADOW, naming the method and payload; v1 serves on with its state, and the inventory keeps the result", async () => {
    const t = await start();
    const v1 = t.kernel.running("tally");
    const { report, traffic } = await swapUnderTraffic(t, fixture(t, "tally-greet"), { shadow: 20 });

    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_SHADOW", phase: "shadow" });
    expect(report.blackoutMs).toBeNull();
    const shadow = report.shadow;
    expect(shadow?.messages).toBeGreaterThanOrEqual(20);
    expect(shadow?.divergences).toBeGreaterThan(0);
    expect(shadow?.expected).toBe(0);
    // Only greet diverged; each example shows the payload and both replies.
    expect(shadow?.examples.length).toBeGreaterThan(0);
    for (const example of shadow?.examples ?? []) {
      const name = JSON.parse(example.payload) as string;
      expect(NAMES).toContain(name);
      expect(example).toMatchObject({ method: "greet", old: JSON.stringify(`hello ${name}`), new: JSON.stringify(`hi ${name}`) });
    }
    expect(shadow?.state).toEqual({ ok: true });

    expect(t.kernel.running("tally")).toBe(v1);
    expect(await t.kernel.call("tally", "greet", "dee")).toBe("hello dee");
    // Every add the callers sent counted once, by v1 alone.
    expect(await t.kernel.call("tally", "total")).toBe(traffic.adds);
    expect(t.kernel.history("tally").at(-1)).toMatchObject({
      outcome: "rolled-back",
      code: "ERR_SWAP_SHADOW",
      semver: "2.0.0",
      shadow: { divergences: shadow?.divergences, messages: shadow?.messages, examples: shadow?.examples },
    });
  });

  it("commits the same v2 when the method is expected to change: its divergences are reported, not counted", async () => {
    const t = await start();
    const { report, traffic } = await swapUnderTraffic(t, fixture(t, "tally-greet"), { shadow: 20, expectChange: ["greet"] });

    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe("committed");
    expect(report.shadow?.divergences).toBe(0);
    expect(report.shadow?.expected).toBeGreaterThan(0);
    expect(report.shadow?.examples.every((e) => e.method === "greet" && e.expected === true)).toBe(true);
    expect(await t.kernel.call("tally", "greet", "dee")).toBe("hi dee");
    expect(await t.kernel.call("tally", "total")).toBe(traffic.adds);
    expect(t.kernel.history("tally").at(-1)).toMatchObject({ outcome: "live", shadow: { divergences: 0 } });
  });

  it("commits an equivalent v2 after at least N messages, with no divergence and equal states", async () => {
    const t = await start();
    const { report, traffic } = await swapUnderTraffic(t, fixture(t, "tally-same"), { shadow: 20 });

    expect(report.outcome).toBe("committed");
    expect(report.shadow).toMatchObject({ requested: 20, divergences: 0, expected: 0, complete: true, examples: [], state: { ok: true } });
    expect(report.shadow?.messages).toBeGreaterThanOrEqual(20);
    expect(report.phases.shadow).toBeTypeOf("number");
    expect(t.kernel.history("tally").at(-1)).toMatchObject({ outcome: "live", semver: "1.1.0", shadow: { messages: report.shadow?.messages, divergences: 0 } });
    expect(await t.kernel.call("tally", "total")).toBe(traffic.adds);
  });

  it("refuses a v2 whose replies are the same but whose state is not, naming the state path that differs", async () => {
    const t = await start();
    const { report, traffic } = await swapUnderTraffic(t, fixture(t, "tally-state"), { shadow: 20 });

    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_SHADOW", phase: "shadow" });
    expect(report.shadow?.state).toEqual({ ok: false, path: "state.adds" });
    // The replies agreed: the one divergence is the state's.
    expect(report.shadow?.divergences).toBe(1);
    expect(report.shadow?.examples).toEqual([expect.objectContaining({ method: "(state)", why: expect.stringContaining("state.adds") })]);
    expect(await t.kernel.call("tally", "total")).toBe(traffic.adds);
  });
});

describe("shadow traffic's limits", () => {
  /** `adds` adds to ann, then `greets` greets: each greet diverges in tally-greet. */
  const messages = (adds: number, greets: number): [string, unknown][] => [
    ...Array.from({ length: adds }, (): [string, unknown] => ["add", "ann"]),
    ...Array.from({ length: greets }, (_, i): [string, unknown] => ["greet", `g${i}`]),
  ];

  it("commits with K divergences under maxDivergence K, and refuses K+1", async () => {
    const t = await start();
    const allowed = await swapWith(t, "tally", fixture(t, "tally-greet"), { shadow: 10, maxDivergence: 2 }, messages(8, 2));
    expect(allowed.report.outcome).toBe("committed");
    expect(allowed.report.shadow).toMatchObject({ messages: 10, divergences: 2, complete: true, state: { ok: true } });
    expect(allowed.replies.slice(8)).toEqual(["hello g0", "hello g1"]);

    // Back to a version that says hello, then the same v2 with one divergence more than allowed.
    const back = await t.kernel.swap("tally", fixture(t, "tally-v1"));
    expect(back.outcome).toBe("committed");
    const refused = await swapWith(t, "tally", fixture(t, "tally-greet"), { shadow: 11, maxDivergence: 2 }, messages(8, 3));
    expect(refused.report.outcome).toBe("rolled-back");
    expect(refused.report.error).toMatchObject({ code: "ERR_SWAP_SHADOW", phase: "shadow" });
    expect(refused.report.shadow).toMatchObject({ messages: 11, divergences: 3 });
    expect(await t.kernel.call("tally", "total")).toBe(16);
  });

  it("names a counted divergence in the report even when more expected ones than the report keeps came first", async () => {
    const t = await start();
    const greetsThenAdd: [string, unknown][] = [...messages(0, 12), ["add", "ann"]];
    const { report } = await swapWith(t, "tally", fixture(t, "t-greet-add"), { shadow: 13, expectChange: ["greet"] }, greetsThenAdd);
    expect(report.outcome).toBe("rolled-back");
    expect(report.shadow).toMatchObject({ messages: 13, divergences: 1, expected: 12 });
    // The divergence that refused the swap is the one an operator must see.
    expect(report.shadow?.examples).toContainEqual({ method: "add", payload: '"ann"', old: "1", new: "10", why: expect.any(String) });
  });

  it("ends a shadow whose N messages do not come in time as incomplete, and the swap goes on", async () => {
    const t = await start({ ...TALLY, swap: { shadowTimeoutMs: 1000 } });
    const { report, replies } = await swapWith(t, "tally", fixture(t, "tally-same"), { shadow: 50 }, messages(5, 0));
    expect(replies).toEqual([1, 2, 3, 4, 5]);
    expect(report.outcome).toBe("committed");
    expect(report.shadow).toMatchObject({ requested: 50, messages: 5, complete: false, divergences: 0, state: { ok: true } });
    expect(await t.kernel.call("tally", "total")).toBe(5);
  });
});

describe("a shadow's calls to a downstream service", () => {
  it("reach the downstream only from the old version: with an equivalent v2, audit sees one note and one ping per add", async () => {
    const t = await start();
    const { report, traffic } = await swapUnderTraffic(t, fixture(t, "tally-same"), { shadow: 20 });
    expect(report.outcome).toBe("committed");
    // Each of the shadow's adds called and sent too: had those been performed, audit would hold more.
    expect(report.shadow?.suppressed.sends).toBeGreaterThan(0);
    const seen = await seenByAudit(t, traffic.adds);
    expect(seen.notes).toHaveLength(traffic.adds);
    expect(seen.pings).toHaveLength(traffic.adds);
  });

  it("refuses a v2 whose calls the old version did not make, and never performs them", async () => {
    const t = await start();
    const { report, traffic } = await swapUnderTraffic(t, fixture(t, "tally-calls"), { shadow: 20 });
    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_SHADOW", phase: "shadow" });
    const unmatched = report.shadow?.examples.filter((e) => e.method === "add") ?? [];
    expect(unmatched.length).toBeGreaterThan(0);
    for (const example of unmatched) {
      // Why it diverged names the call; the new version's call failed with the shadow's code.
      expect(example.why).toContain('"audit" (note)');
      expect(example.new).toBe("ERR_SWAP_SHADOW");
    }
    const seen = await seenByAudit(t, traffic.adds);
    expect(seen.notes.filter((note) => note.extra !== undefined)).toEqual([]);
    expect(seen.notes).toHaveLength(traffic.adds);
    expect(seen.pings).toHaveLength(traffic.adds);
  });
});

describe("a shadowed version's side effects", () => {
  let server: Server | undefined;
  /** Every request the HTTP server got, by URL path and query. */
  const requests: string[] = [];
  afterEach(async () => {
    const open = server;
    server = undefined;
    if (open !== undefined) await new Promise((resolve) => open.close(resolve));
    requests.length = 0;
  });

  /** A kernel running t-effects-v1 (fetching from a local server) beside audit. */
  async function effects(): Promise<TestKernel> {
    server = createServer((req, res) => {
      requests.push(req.url ?? "");
      res.end(`seen ${requests.length}`);
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return start({
      services: {
        fx: {
          entry: "./shadow/t-effects-v1.ts",
          bindings: { audit: "audit" },
          permissions: { net: ["127.0.0.1"], stdout: true },
          config: { url: `http://127.0.0.1:${port}` },
        },
        audit: { entry: "./shadow/audit.ts" },
      },
    });
  }

  const hits = (count: number): [string, unknown][] => Array.from({ length: count }, (_, i): [string, unknown] => ["hit", NAMES[i % NAMES.length]]);
  const lines = (t: TestKernel, marker: string): string[] => t.out.filter((line) => line.includes(marker));

  it("performs none of a refused v2's sends, fetches, stdout writes, console lines or storage writes", async () => {
    const t = await effects();
    const { report, replies } = await swapWith(t, "fx", fixture(t, "t-effects-v2"), { shadow: 12 }, hits(12));
    expect(replies).toHaveLength(12);

    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_SHADOW", phase: "shadow" });
    expect(report.shadow?.examples[0]?.why).toContain("fetch");
    // What the shadow tried, counted: two fetches a hit (one matched, one not), one send, one stdout write and one console line.
    expect(report.shadow?.suppressed).toEqual({ sends: 12, fetches: 24, stdout: 12, console: 12 });

    // The server saw v1's fetches alone: its second fetch was never made.
    expect(requests).toHaveLength(12);
    expect(requests.filter((url) => url.includes("by=v2"))).toEqual([]);
    expect(lines(t, "v1 hit")).toHaveLength(12);
    expect(lines(t, "v1 console")).toHaveLength(12);
    expect(lines(t, "v2")).toEqual([]);
    const seen = await seenByAudit(t, 12);
    expect(seen.pings).toHaveLength(12);
    expect(seen.pings.filter((ping) => !ping.startsWith("v1 "))).toEqual([]);
    // The store holds what v1 wrote and nothing else.
    const stored = (await t.kernel.call("fx", "stored")) as Record<string, { by: string }>;
    expect(Object.keys(stored)).toHaveLength(12);
    expect(Object.values(stored).filter((value) => value.by !== "v1")).toEqual([]);
    expect(await t.kernel.call("fx", "hits")).toBe(12);
  });

  it("answers an equivalent v2's fetches with the old version's replies, and it commits having performed nothing", async () => {
    const t = await effects();
    const { report } = await swapWith(t, "fx", fixture(t, "t-effects-same"), { shadow: 12 }, hits(12));

    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe("committed");
    // Equal replies: the body each fetch got ("seen n") is the old version's, not one of its own.
    expect(report.shadow).toMatchObject({ messages: 12, divergences: 0, state: { ok: true } });
    expect(report.shadow?.suppressed).toEqual({ sends: 12, fetches: 12, stdout: 12, console: 12 });
    expect(requests).toHaveLength(12);
    expect(lines(t, "same")).toEqual([]);
    const seen = await seenByAudit(t, 12);
    expect(seen.pings.filter((ping) => !ping.startsWith("v1 "))).toEqual([]);
    const stored = (await t.kernel.call("fx", "stored")) as Record<string, unknown>;
    expect(Object.keys(stored).filter((key) => !key.startsWith("hit/"))).toEqual([]);
    expect(Object.values(stored).filter((value) => (value as { by: string }).by !== "v1")).toEqual([]);
  });

  it("lets no timer a shadowed message armed perform its send after the shadow has ended", async () => {
    const t = await start({
      services: {
        tally: { entry: "./shadow/t-late-v1.ts", bindings: { audit: "audit" } },
        audit: { entry: "./shadow/audit.ts" },
      },
    });
    const { report } = await swapWith(t, "tally", fixture(t, "t-late-v2"), { shadow: 6 }, hits(6).map(([, name]): [string, unknown] => ["add", name]));
    expect(report.outcome).toBe("committed");
    // No message reached v2 after its cutover: a late ping could only come from the shadow's timers.
    const seen = (await t.kernel.call("audit", "seen")) as Seen;
    expect(seen.pings.filter((ping) => ping.startsWith("late "))).toEqual([]);
    expect(seen.pings).toHaveLength(6);
  });
});

describe("a shadow over ctx.storage", () => {
  it("commits an equivalent v2 whose handlers read what they wrote before: the shadow reads the store as the old version did, not as it is later", async () => {
    const t = await start({ services: { counter: { entry: "./shadow/t-stored-v1.ts" } } });
    // Several callers on two keys, so that the old version runs ahead of the shadow.
    const callers = 4;
    let stopped = false;
    let adds = 0;
    const loops = Array.from({ length: callers }, async (_, c) => {
      for (let i = c; !stopped; i++) {
        await t.kernel.call("counter", "add", i % 2 === 0 ? "a" : "b");
        adds++;
      }
    });
    let report: SwapReport;
    try {
      report = await t.kernel.swap("counter", fixture(t, "t-stored-same"), { shadow: 40 });
    } finally {
      stopped = true;
      await Promise.all(loops);
    }
    expect(report.shadow?.examples).toEqual([]);
    expect(report.outcome).toBe("committed");
    expect(((await t.kernel.call("counter", "count", "a")) as number) + ((await t.kernel.call("counter", "count", "b")) as number)).toBe(adds);
  });
});

describe("a shadow report's examples", () => {
  it("never keep the credentials a request carried, since the inventory keeps them", () => {
    const shown = preview({ method: "GET", url: "http://x/a", headers: { authorization: "Bearer s3cret", cookie: "sid=s3cret", accept: "text/plain" } });
    expect(shown).not.toContain("s3cret");
    expect(shown).toContain("(hidden)");
    expect(shown).toContain("text/plain");
  });
});
