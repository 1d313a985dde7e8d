// The gateway: routing by prefix (stripped), and an answer it cannot pass on
// reported as the failure of the service that gave it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpIngress } from "../../core/http-ingress.ts";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { ROOT } from "../support/runtime.ts";
import { sample } from "../support/prometheus.ts";

const req = (path: string) => ({ method: "GET", url: `http://molt.test${path}`, headers: {}, body: null });


describe("gateway", () => {
  let t: TestKernel;
  let ingress: HttpIngress;
  beforeAll(async () => {
    t = await startKernel(
      {
        services: {
          gateway: { entry: "./services/gateway/index.ts", bindings: { answers: "answers" }, config: { routes: { "/answers": "answers" } } },
          answers: { entry: "./test/fixtures/i20a-answers.ts" },
        },
      },
      ROOT,
    );
    ingress = new HttpIngress(
      { port: 0, host: "127.0.0.1", service: "gateway", maxBodyBytes: 1024, maxReplyBytes: 1024 * 1024, exposeErrors: "full" },
      (service, method, payload) => t.kernel.call(service, method, payload),
    );
    await ingress.listen();
  });
  afterAll(async () => {
    await ingress.close();
    await t.kernel.stop();
  });

  it("strips the route's prefix from the URL the service sees, query kept", async () => {
    expect(await t.kernel.call("gateway", "fetch", req("/answers/a/b?q=1"))).toMatchObject({ status: 200, body: "/a/b?q=1" });
    expect(await t.kernel.call("gateway", "fetch", req("/answers"))).toMatchObject({ status: 200, body: "/" });
  });

  it.each(["/no-status", "/status-99", "/bad-header", "/text"])(
    "answers an invalid response (%s) with ERR_BAD_RESPONSE naming the service, counted as the gateway's error, and 502 over HTTP",
    async (path) => {
      const before = await t.metrics.text();
      const err = await rejection(t.kernel.call("gateway", "fetch", req(`/answers${path}`)));
      expect(err.code).toBe("ERR_BAD_RESPONSE");
      // Named by its binding: the gateway passed on what `answers` gave it.
      expect(err.message).toContain("answers");
      const after = await t.metrics.text();
      const delta = (labels: Record<string, string>, name = "molt_requests_total"): number => (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);
      expect({
        error: delta({ service: "gateway", outcome: "error" }),
        ok: delta({ service: "gateway", outcome: "ok" }),
        code: delta({ service: "gateway", code: "ERR_BAD_RESPONSE" }, "molt_errors_total"),
      }).toEqual({ error: 1, ok: 0, code: 1 });

      const res = await fetch(`${ingress.url}/answers${path}`);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect({ status: res.status, code: body.error.code }).toEqual({ status: 502, code: "ERR_BAD_RESPONSE" });
      expect(body.error.message).toContain("answers");
    },
  );
});
