import { describe, expect, it } from "vitest";
import { grantedEnv, netAllows } from "../../core/permissions.ts";

describe("permissions", () => {
  it("grants fetch by host, or by host and port", () => {
    const net = ["api.example.com:443", "127.0.0.1:8080", "open.example"];
    expect(netAllows(net, new URL("https://api.example.com/x"))).toBe(true);
    expect(netAllows(net, new URL("http://api.example.com/x"))).toBe(false);
    expect(netAllows(net, new URL("https://API.EXAMPLE.COM:443/"))).toBe(true);
    expect(netAllows(net, new URL("http://127.0.0.1:8080/"))).toBe(true);
    expect(netAllows(net, new URL("http://127.0.0.1:8081/"))).toBe(false);
    expect(netAllows(net, new URL("http://open.example:1234/"))).toBe(true);
    expect(netAllows(net, new URL("https://evil.example/"))).toBe(false);
    expect(netAllows(net, new URL("https://api.example.com.evil.example/"))).toBe(false);
    expect(netAllows(["[::1]:80"], new URL("http://[::1]/"))).toBe(true);
    expect(netAllows(net, new URL("file:///etc/passwd"))).toBe(false);
  });

  it("hands over only the granted environment variables that are set", () => {
    expect(grantedEnv({ net: [], env: ["A", "MISSING"], stdout: false }, { A: "1", B: "2" })).toEqual({ A: "1" });
  });
});
