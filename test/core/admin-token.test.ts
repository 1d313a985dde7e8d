// The admin token in dataDir: created 0600 on first use and kept, and
// refused with ERR_CONFIG when the file at its name could guard nothing or
// is not plainly molt's own file. A refused file is left as it is.

import { execFileSync } from "node:child_process";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { adminToken, checkToken, readAdminToken, tokenPath } from "../../core/admin-token.ts";
import { codeOf } from "../support/codes.ts";

const fresh = (): string => mkdtempSync(join(tmpdir(), "molt-token-"));


describe("adminToken", () => {
  it("creates a 64-hex token, mode 0600, on first use, and reads the same one back after", () => {
    const dir = fresh();
    const token = adminToken(dir);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(tokenPath(dir)).mode & 0o777).toBe(0o600);
    expect(readFileSync(tokenPath(dir), "utf8").trim()).toBe(token);
    expect(adminToken(dir)).toBe(token);
    expect(adminToken(fresh())).not.toBe(token);
  });

  it("keeps a token an operator put there: 64+ hex characters or 43+ base64/base64url characters, with a trailing newline", () => {
    for (const token of ["0123456789abcdef".repeat(4), "0123456789ABCDEF".repeat(5), "mZ3q8T_x1kVb-7rLwP0sYc2NfHa9JdUe4GiOtR6yKlQ", "mZ3q8T+x1kVb/7rLwP0sYc2NfHa9JdUe4GiOtR6yKlQ="]) {
      const dir = fresh();
      writeFileSync(tokenPath(dir), `${token}\n`, { mode: 0o600 });
      expect(adminToken(dir)).toBe(token);
    }
  });

  it("makes a token file that others could read private again", () => {
    const dir = fresh();
    writeFileSync(tokenPath(dir), "0123456789abcdef".repeat(4));
    chmodSync(tokenPath(dir), 0o644);
    adminToken(dir);
    expect(statSync(tokenPath(dir)).mode & 0o777).toBe(0o600);
  });

  it.each([
    ["empty", ""],
    ["only whitespace", "  \n\t\n"],
    ["too short in hex", "0123456789abcdef".repeat(3)],
    ["not random", "0".repeat(64)],
    ["larger than any token", "a1".repeat(4096)],
  ])("refuses a token file that is %s with ERR_CONFIG, and leaves it as it is", (_name, content) => {
    const dir = fresh();
    writeFileSync(tokenPath(dir), content);
    expect(codeOf(() => adminToken(dir))).toBe("ERR_CONFIG");
    expect(readFileSync(tokenPath(dir), "utf8")).toBe(content);
  });

  it("does not follow a symlinked token file, even one to a good token or to nothing, nor read a FIFO or a folder", () => {
    const dir = fresh();
    writeFileSync(join(dir, "real.token"), "0123456789abcdef".repeat(4), { mode: 0o600 });
    symlinkSync(join(dir, "real.token"), tokenPath(dir));
    expect(codeOf(() => adminToken(dir))).toBe("ERR_CONFIG");
    // A symlink to nowhere is not replaced by a new token either: it is refused the same way.
    const dangling = fresh();
    symlinkSync(join(dangling, "nowhere"), tokenPath(dangling));
    expect(codeOf(() => adminToken(dangling))).toBe("ERR_CONFIG");
    expect(lstatSync(tokenPath(dangling)).isSymbolicLink()).toBe(true);

    const fifo = fresh();
    execFileSync("mkfifo", [tokenPath(fifo)]);
    expect(codeOf(() => adminToken(fifo))).toBe("ERR_CONFIG");
    const folder = fresh();
    mkdirSync(tokenPath(folder));
    expect(codeOf(() => adminToken(folder))).toBe("ERR_CONFIG");
  });

  it("reads no token where there is no file: readAdminToken refuses with ERR_CONFIG", () => {
    expect(codeOf(() => readAdminToken(fresh()))).toBe("ERR_CONFIG");
  });
});

describe("checkToken", () => {
  it("refuses with ERR_CONFIG a token that cannot hold 32 bytes of entropy", () => {
    const refused = [
      "",
      " \n\t ",
      "secret",
      "0123456789abcdef".repeat(3), // 48 hex characters: 24 bytes
      "0123456789abcdef".repeat(3).slice(0, 43), // 43 characters, but all hex
      "mZ3q8T_x1kVb-7rLwP0sYc2NfHa9JdUe4GiOtR6yKl", // 42 base64url characters
      "mZ3q8T+x1kVb/7rLwP0sYc2NfHa9JdUe4GiOtR6y==", // 40 base64 characters and padding, which does not count
      "0".repeat(64),
      "ab".repeat(40),
      "0123456789abcdef".repeat(2) + " " + "0123456789abcdef".repeat(2), // whitespace inside
      "é".repeat(64),
    ];
    for (const token of refused) expect(codeOf(() => checkToken(token, "admin.token")), JSON.stringify(token)).toBe("ERR_CONFIG");
  });
});
