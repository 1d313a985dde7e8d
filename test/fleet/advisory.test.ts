// Advisories as data: which version fixes what (declared, listed, revoked),
// how `add` and `revoke` change a record, and how `molt fleet status
// --advisory` sorts the fleet's runtimes into fixed, vulnerable and unknown.
// Pure functions, no NATS.

import { describe, expect, it } from "vitest";
import { advisoryStatus, concernedServices, formatAdvisoryStatus } from "../../fleet/advisory-status.ts";
import { addToAdvisory, checkAdvisoryId, checkSeverity, checkVersion, fixesAdvisory, revokeInAdvisory } from "../../fleet/advisory.ts";
import type { AdvisoryRecord, NodeService } from "../../fleet/protocol.ts";
import { seenNode } from "../support/seen-node.ts";

const V1 = "1".repeat(64);
const V2 = "2".repeat(64);
const V3 = "3".repeat(64);
const ID = "MOLT-2026-0001";

const FIXES: Record<string, string[]> = { [V1]: [], [V2]: [ID], [V3]: [ID, "MOLT-2026-0002"] };

function service(name: string, version: string | null, fixes: string[] | null = version === null ? [] : (FIXES[version] ?? [])): NodeService {
  return { name, state: "running", version, semver: version === null ? null : `${version[0]}.0.0`, stateVersion: 1, fixes, chain: [] };
}

const node = seenNode;

const advisory = (fields: Partial<AdvisoryRecord> = {}): AdvisoryRecord => ({
  id: ID,
  title: null,
  severity: null,
  fixedIn: [],
  revoked: [],
  createdAt: "",
  updatedAt: "",
  ...fields,
});

const names = (entries: { node: string; service: string }[]): string[] => entries.map((e) => `${e.node}/${e.service}`);

describe("which version fixes an advisory", () => {
  it("counts a version that declares the id, or that the advisory lists by id or prefix, unless it was revoked", () => {
    expect(fixesAdvisory(advisory(), V2, [ID])).toBe(true);
    expect(fixesAdvisory(advisory(), V1, [])).toBe(false);
    expect(fixesAdvisory(advisory(), V1, ["MOLT-2026-0002"])).toBe(false);
    // Listed without declaring it, by a prefix as `molt fleet status` prints versions.
    expect(fixesAdvisory(advisory({ fixedIn: [V1.slice(0, 12)] }), V1, [])).toBe(true);
    // Revoked: not fixed, whatever the module declares or the list says.
    expect(fixesAdvisory(advisory({ revoked: [V2.slice(0, 8)] }), V2, [ID])).toBe(false);
    expect(fixesAdvisory(advisory({ fixedIn: [V1], revoked: [V1] }), V1, [])).toBe(false);
    // A version whose declaration is not known counts by the list alone; no version at all fixes nothing.
    expect(fixesAdvisory(advisory({ fixedIn: [V3] }), V3, null)).toBe(true);
    expect(fixesAdvisory(advisory(), V3, null)).toBe(false);
    expect(fixesAdvisory(advisory({ fixedIn: [V1] }), null, null)).toBe(false);
  });

  it("is cumulative by declaration: a later version that does not declare the fix is not credited with it", () => {
    // V3 declares ID; a V4 built on it that dropped the declaration is vulnerable.
    const V4 = "4".repeat(64);
    expect(fixesAdvisory(advisory(), V3, FIXES[V3])).toBe(true);
    expect(fixesAdvisory(advisory(), V4, ["MOLT-2026-0002"])).toBe(false);
  });

  it("add sets the fields given and adds versions; revoke withdraws one; naming a revoked version again restores it", () => {
    const created = addToAdvisory(null, ID, { title: "heap overflow", severity: "high", fixedIn: [V1] }, "t0");
    expect(created).toEqual({ id: ID, title: "heap overflow", severity: "high", fixedIn: [V1], revoked: [], createdAt: "t0", updatedAt: "t0" });
    const more = addToAdvisory(created, ID, { fixedIn: [V1, V3] }, "t1");
    expect(more).toMatchObject({ title: "heap overflow", severity: "high", fixedIn: [V1, V3], createdAt: "t0", updatedAt: "t1" });
    const revoked = revokeInAdvisory(more, V1, "t2");
    expect(revoked).toMatchObject({ fixedIn: [V3], revoked: [V1] });
    expect(revokeInAdvisory(revoked, V1, "t3").revoked).toEqual([V1]);
    expect(addToAdvisory(revoked, ID, { fixedIn: [V1] }, "t4")).toMatchObject({ fixedIn: [V3, V1], revoked: [] });
  });

  it("refuses ids, versions and severities it cannot keep, with ERR_USAGE", () => {
    expect(checkAdvisoryId("CVE-2026.1234_a")).toBe("CVE-2026.1234_a");
    for (const bad of ["", "has space", "a*b", "x".repeat(129), "-leading"]) expect(() => checkAdvisoryId(bad)).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    expect(checkVersion(" ABCDEF12 ", "--version")).toBe("abcdef12");
    for (const bad of ["abc", "1.0.0", "zzzzzzzz"]) expect(() => checkVersion(bad, "--version")).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
    expect(checkSeverity("High")).toBe("high");
    expect(() => checkSeverity("urgent")).toThrow(expect.objectContaining({ code: "ERR_USAGE" }));
  });
});

describe("fleet status --advisory", () => {
  const fleet = [
    node("a", [service("api", V1), service("log", V1, [])]),
    node("b", [service("api", V2), service("log", V1, [])]),
    node("c", [service("api", V3), service("log", V1, [])]),
    node("d", [service("api", V3)], false),
  ];

  it("groups the runtimes of the services the advisory concerns into fixed, vulnerable and unknown", () => {
    const status = advisoryStatus(fleet, advisory());
    // "log" has no version that declares or is named for the id: not judged.
    expect(status.services).toEqual(["api"]);
    expect(names(status.fixed)).toEqual(["b/api", "c/api"]);
    expect(names(status.vulnerable)).toEqual(["a/api"]);
    // d's heartbeat stopped: what it runs now is not known, whatever it ran.
    expect(names(status.unknown)).toEqual(["d/api"]);
    expect(status.fixed[0]).toEqual({ node: "b", service: "api", version: V2, semver: "2.0.0" });
  });

  it("after a revoke, runtimes on the revoked version are vulnerable; later versions stay fixed", () => {
    const status = advisoryStatus(fleet, advisory({ revoked: [V2.slice(0, 12)] }));
    expect(names(status.fixed)).toEqual(["c/api"]);
    expect(names(status.vulnerable)).toEqual(["a/api", "b/api"]);
  });

  it("judges every service when no known version names the advisory, and a listed version brings its service in", () => {
    const none = advisory({ id: "MOLT-2026-0099" });
    expect(concernedServices(fleet, none)).toEqual(["api", "log"]);
    expect(names(advisoryStatus(fleet, none).vulnerable)).toEqual(["a/api", "a/log", "b/api", "b/log", "c/api", "c/log"]);
    // Named in the list by a version found only in a runtime's recent history.
    const withChain = [node("e", [{ ...service("log", V1, []), chain: [{ version: V3, semver: "3.0.0", stateVersion: 1, parent: null, via: "start", outcome: "replaced", startedAt: null }] }])];
    expect(concernedServices(withChain, advisory({ id: "X-1", fixedIn: [V3] }))).toEqual(["log"]);
  });

  it("takes a version's declaration from any heartbeat that carried it, when another had no room for it", () => {
    const crowded = [node("a", [service("api", V2, null)]), node("b", [service("api", V2)])];
    expect(names(advisoryStatus(crowded, advisory()).fixed)).toEqual(["a/api", "b/api"]);
    // Carried by none: counted by the advisory's list alone.
    expect(names(advisoryStatus([node("a", [service("api", V2, null)])], advisory()).vulnerable)).toEqual(["a/api"]);
  });

  it("prints each group's count broken down by version, naming a few runtimes and counting the rest", () => {
    const many = Array.from({ length: 12 }, (_, i) => node(`n${String(i).padStart(2, "0")}`, [service("api", V1)]));
    const text = formatAdvisoryStatus(advisoryStatus([...fleet, ...many], advisory({ title: "heap overflow", severity: "high" })));
    expect(text).toMatch(/^MOLT-2026-0001 {2}heap overflow {2}\(high\)/);
    expect(text).toMatch(/^fixed {6}2 runtimes$/m);
    expect(text).toMatch(/^vulnerable 13 runtimes$/m);
    expect(text).toMatch(/^ {2}api +111111111111 +1\.0\.0 +13: a, n00, n01, n02, n03, n04, n05, n06 and 5 more$/m);
    expect(text).toMatch(/^unknown {4}1 runtime \(no recent heartbeat\)$/m);
  });
});
