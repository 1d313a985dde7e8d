// The admin token: the secret behind every write call of the admin API,
// kept in dataDir/admin.token (mode 0600). molt writes one on first start;
// an operator may put their own there. A token file that could guard
// nothing (empty, short, not random) or that is not plainly a file of
// molt's user (a symlink, a FIFO, another user's) stops the runtime from
// starting with ERR_CONFIG: an empty token used to turn the check off.

import { randomBytes } from "node:crypto";
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { writeAtomic } from "./disk.ts";
import { ErrorCode, MoltError } from "./errors.ts";

/** Far more than any well-formed token: a larger file is not one. */
const MAX_TOKEN_FILE = 4096;

/**
 * The admin token of a dataDir, created on first use with mode 0600 (64 hex
 * characters: 32 random bytes). An existing file is read without following
 * a symlink and must hold a well-formed token (see checkToken); anything
 * else is ERR_CONFIG, and the runtime refuses to start rather than serve
 * writes behind a token that guards nothing.
 */
export function adminToken(dataDir: string): string {
  const path = tokenPath(dataDir);
  // lstat, not exists: a symlink to nowhere is something at the name too, and is refused as a symlink.
  if (lstatSync(path, { throwIfNoEntry: false }) !== undefined) return readAdminToken(dataDir);
  const token = randomBytes(32).toString("hex");
  writeAtomic(path, `${token}\n`, { mode: 0o600 });
  return token;
}

/** Reads and checks an existing token file (never through a symlink); ERR_CONFIG if it is not a file holding a token. */
export function readAdminToken(dataDir: string): string {
  const path = tokenPath(dataDir);
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the name must not hang the runtime's start.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === "ELOOP" ? "is a symlink (molt does not follow one for its token)" : `cannot be read (${code ?? String(cause)})`;
    throw new MoltError(ErrorCode.CONFIG, `${path} ${why}`, { cause });
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new MoltError(ErrorCode.CONFIG, `${path} is not a regular file`);
    if (stat.size > MAX_TOKEN_FILE) throw new MoltError(ErrorCode.CONFIG, `${path} is ${stat.size} bytes: not an admin token`);
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) throw new MoltError(ErrorCode.CONFIG, `${path} belongs to another user (uid ${stat.uid})`);
    if ((stat.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    const buffer = Buffer.alloc(MAX_TOKEN_FILE);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.byteLength - length, null);
      length += n;
      if (n === 0 || length === buffer.byteLength) break;
    }
    return checkToken(buffer.subarray(0, length).toString("utf8").trim(), path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Accepts a token only if it can hold 32 bytes of entropy: at least 64 hex
 * characters, or at least 43 base64 / base64url characters (not all of
 * them hex digits), with at least 10 different characters (so that "0" × 64
 * is refused). An empty or whitespace-only file used to turn the check off.
 */
export function checkToken(token: string, path: string): string {
  const refuse = (why: string): never => {
    throw new MoltError(ErrorCode.CONFIG, `${path} ${why}; delete it and molt writes a new one, or put 32 random bytes in it (openssl rand -hex 32)`);
  };
  if (token === "") refuse("is empty");
  if (!/^[A-Za-z0-9_+/-]+={0,2}$/.test(token)) refuse("holds characters a token does not have (hex or base64 only)");
  const symbols = token.replace(/=+$/, "");
  const minimum = /^[0-9a-fA-F]+$/.test(symbols) ? 64 : 43;
  if (symbols.length < minimum) refuse(`is too short (${symbols.length} characters, at least ${minimum})`);
  if (new Set(symbols).size < 10) refuse("is not random (too few different characters)");
  return token;
}

export function tokenPath(dataDir: string): string {
  return join(dataDir, "admin.token");
}
