// The kernel's version is the hash of molt's own code: any byte of a file the
// runtime loads changes it, and nothing else does.

import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { computeKernelIdentity, KERNEL_FOLDERS, kernelIdentity, MOLT_ROOT } from "../../core/kernel-version.ts";
import { codeOf } from "../support/codes.ts";

/** A copy of the molt package's kernel code (not its tests or services) in a folder of its own. */
function copyOfMolt(): string {
  const root = mkdtempSync(join(tmpdir(), "molt-kernel-"));
  cpSync(join(MOLT_ROOT, "package.json"), join(root, "package.json"));
  for (const folder of KERNEL_FOLDERS) {
    if (existsSync(join(MOLT_ROOT, folder))) cpSync(join(MOLT_ROOT, folder), join(root, folder), { recursive: true });
  }
  return root;
}

describe("kernelIdentity", () => {
  it("names this process's molt by a sha256 of its code and the package's semver, computed once", () => {
    const id = kernelIdentity();
    expect(id.version).toMatch(/^[0-9a-f]{64}$/);
    expect(id.semver).toBe((JSON.parse(readFileSync(join(MOLT_ROOT, "package.json"), "utf8")) as { version: string }).version);
    expect(kernelIdentity()).toBe(id);
  });
});

describe("computeKernelIdentity", () => {
  let root: string;
  beforeEach(() => {
    root = copyOfMolt();
  });

  it("gives a copy of the same code the same version", () => {
    expect(computeKernelIdentity(root)).toEqual(computeKernelIdentity(MOLT_ROOT));
  });

  it("changes when one byte of a file under core/ changes, and comes back when it is put back", () => {
    const before = computeKernelIdentity(root);
    const file = join(root, "core", "kernel.ts");
    const bytes = readFileSync(file);
    const changed = Buffer.from(bytes);
    changed[100] = (changed[100] as number) ^ 1;
    writeFileSync(file, changed);
    const after = computeKernelIdentity(root);
    expect(after.version).not.toBe(before.version);
    expect(after.semver).toBe(before.semver);
    writeFileSync(file, bytes);
    expect(computeKernelIdentity(root)).toEqual(before);
  });

  it("changes when a file is renamed or added, or package.json changes", () => {
    const before = computeKernelIdentity(root).version;
    renameSync(join(root, "protocol", "wire.ts"), join(root, "protocol", "wire2.ts"));
    const renamed = computeKernelIdentity(root).version;
    expect(renamed).not.toBe(before);
    writeFileSync(join(root, "guest", "new.ts"), "export {};\n");
    expect(computeKernelIdentity(root).version).not.toBe(renamed);

    const other = copyOfMolt();
    const manifest = JSON.parse(readFileSync(join(other, "package.json"), "utf8")) as { version: string };
    writeFileSync(join(other, "package.json"), JSON.stringify({ ...manifest, version: "9.9.9" }));
    const bumped = computeKernelIdentity(other);
    expect(bumped.semver).toBe("9.9.9");
    expect(bumped.version).not.toBe(before);
  });

  it("ignores what the runtime does not load: dot files, and folders outside molt's code", () => {
    const before = computeKernelIdentity(root);
    writeFileSync(join(root, "core", ".kernel.ts.swp"), "editor state");
    writeFileSync(join(root, "README.md"), "docs");
    cpSync(join(MOLT_ROOT, "test", "core", "kernel-version.test.ts"), join(root, "test.ts"));
    expect(computeKernelIdentity(root)).toEqual(before);
  });

  it("refuses a folder that is not the molt package", () => {
    expect(codeOf(() => computeKernelIdentity(mkdtempSync(join(tmpdir(), "molt-not-"))))).toBe("ERR_INTERNAL");
  });
});
