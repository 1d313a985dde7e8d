import { describe, expect, it } from "vitest";
import { Mailbox } from "../../core/mailbox.ts";

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe("Mailbox", () => {
  it("runs one delivery at a time by default, in order", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 100 });
    const seen: string[] = [];
    const job = (tag: string) => async () => {
      seen.push(`in ${tag}`);
      await tick();
      seen.push(`out ${tag}`);
      return tag;
    };
    expect(await Promise.all([box.push(job("a")), box.push(job("b"))])).toEqual(["a", "b"]);
    expect(seen).toEqual(["in a", "out a", "in b", "out b"]);
  });

  it("refuses past its bound with ERR_MAILBOX_FULL", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 2 });
    const release = box.hold();
    const accepted = [box.push(async () => 1), box.push(async () => 2)];
    await expect(box.push(async () => 3)).rejects.toMatchObject({ code: "ERR_MAILBOX_FULL", service: "svc" });
    release();
    expect(await Promise.all(accepted)).toEqual([1, 2]);
  });

  it("keeps queued messages across a pause and delivers them to whatever target is current at resume", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 100 });
    let target = "old";
    const delivered: string[] = [];
    const send = (n: number) => box.push(async () => {
      delivered.push(`${n}→${target}`);
      await tick(1);
    });
    const first = send(1);
    const release = box.hold();
    await box.drained();
    const queued = [send(2), send(3), send(4)];
    expect(box.depth).toBe(3);
    target = "new";
    release();
    await Promise.all([first, ...queued]);
    expect(delivered).toEqual(["1→old", "2→new", "3→new", "4→new"]);
  });

  it("waits for in-flight work when drained while paused", async () => {
    const box = new Mailbox("svc", { concurrency: 2, bound: 100 });
    let finished = 0;
    const slow = () => box.push(async () => {
      await tick(20);
      finished++;
    });
    void slow();
    void slow();
    await tick(1);
    const release = box.hold();
    void slow();
    await box.drained();
    expect(finished).toBe(2);
    expect(box.depth).toBe(1);
    release();
  });

  it("refuses new messages once closed, after running everything queued", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 100 });
    box.hold();
    const queued = box.push(async () => "late");
    const closing = box.close();
    await expect(box.push(async () => "refused")).rejects.toMatchObject({ code: "ERR_STOPPING" });
    await closing;
    expect(await queued).toBe("late");
  });

  it("runs 5,000 messages queued during a hold in exactly their order, never more than concurrency plus the window (128) handed over at once", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 10_000 });
    const release = box.hold();
    const order: number[] = [];
    let running = 0;
    let most = 0;
    const all = Array.from({ length: 5_000 }, (_, i) =>
      box.push(async () => {
        running++;
        most = Math.max(most, running);
        order.push(i);
        await Promise.resolve();
        running--;
        return i;
      }),
    );
    expect(box.depth).toBe(5_000);
    release();
    expect(await Promise.all(all)).toEqual(Array.from({ length: 5_000 }, (_, i) => i));
    expect(order).toEqual(Array.from({ length: 5_000 }, (_, i) => i));
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(128);
    expect(box.depth).toBe(0);
    expect(box.inFlight).toBe(0);
  });

  it("fails only the delivery that throws before it returns a promise; the next one runs", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 100 });
    const first = box.push(() => {
      throw new Error("no instance");
    });
    const second = box.push(async () => "ok");
    await expect(first).rejects.toThrow("no instance");
    expect(await second).toBe("ok");
  });

  it("resolves drained() at once when nothing runs, and only after the running delivery settles otherwise", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 100 });
    let drained = false;
    await box.drained();
    let finish!: () => void;
    const running = box.push(() => new Promise<void>((resolve) => (finish = resolve)));
    const release = box.hold();
    // Queued behind the hold: drained() waits for what runs, not for the queue to empty.
    const queued = box.push(async () => "later");
    void box.drained().then(() => (drained = true));
    await tick(1);
    expect(drained).toBe(false);
    finish();
    await running;
    await tick(1);
    expect(drained).toBe(true);
    expect(box.depth).toBe(1);
    release();
    expect(await queued).toBe("later");
  });

  it("settles a message once when its delivery hands back a thenable that calls back twice, and drains after it", async () => {
    const box = new Mailbox("svc", { concurrency: 1, bound: 100 });
    const twice = { then: (resolve: (v: string) => void) => { resolve("first"); resolve("second"); } };
    const first = box.push(() => twice as unknown as Promise<string>);
    const next = box.push(async () => "next");
    expect(await first).toBe("first");
    expect(await next).toBe("next");
    await box.drained();
    expect(box.inFlight).toBe(0);
    expect(box.depth).toBe(0);
  });
});
