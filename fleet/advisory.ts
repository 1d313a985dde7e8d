// Advisories: a named problem (a security hole, a bug) and the versions
// that fix it, kept in the fleet's KV bucket `molt_advisories`, one key per
// advisory. A version fixes advisory X when it declares X in its module's
// `fixes` or the advisory lists it in `fixedIn`, and the advisory has not
// revoked it. Cumulative by declaration: a version is credited only with
// what it declares itself (or is listed for); nothing is inherited from the
// versions before it, so a fix that a later version dropped is not assumed.

import { jetstream, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { ErrorCode, MoltError } from "../core/errors.ts";
import { isStaleRevision } from "./connection.ts";
import { Bucket, decodeRecord, encodeRecord, type AdvisoryRecord } from "./protocol.ts";

/**
 * The code for an advisory id no record exists for. Kept here until
 * protocol/errors.ts lists it as ErrorCode.NO_ADVISORY.
 */
export const ERR_NO_ADVISORY = ErrorCode.NO_ADVISORY;

/** The severities an advisory may be given. */
export const SEVERITIES = ["low", "medium", "high", "critical"] as const;

/** An advisory id is a KV key: letters, digits, '.', '_' and '-', at most 128 characters (what a module may declare). */
const ADVISORY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A version as a user names it: a content id, or a prefix of one long enough to be unique in practice. */
const VERSION_PREFIX = /^[0-9a-f]{8,64}$/;

export function checkAdvisoryId(id: string): string {
  if (!ADVISORY_ID.test(id)) {
    throw new MoltError(ErrorCode.USAGE, `"${id}" is not an advisory id: letters, digits, '.', '_' and '-', at most 128 characters`);
  }
  return id;
}

/** A version id or prefix as given on the command line, lower-cased; ERR_USAGE when it is not one. */
export function checkVersion(version: string, flag: string): string {
  const v = version.trim().toLowerCase();
  if (!VERSION_PREFIX.test(v)) throw new MoltError(ErrorCode.USAGE, `${flag} takes a version id (at least 8 hex digits, as \`molt fleet status\` prints it), not "${version}"`);
  return v;
}

export function checkSeverity(severity: string): string {
  const s = severity.trim().toLowerCase();
  if (!(SEVERITIES as readonly string[]).includes(s)) throw new MoltError(ErrorCode.USAGE, `--severity is one of ${SEVERITIES.join(", ")}, not "${severity}"`);
  return s;
}

/** Whether `version` is named in a list of versions and prefixes. */
function listed(list: readonly string[], version: string): boolean {
  return list.some((v) => version.startsWith(v));
}

/**
 * Whether a version fixes an advisory: it declares the id or the advisory
 * lists it, and the advisory has not revoked it. `declared` is null when the
 * version's declaration is not known (a heartbeat that had no room for it):
 * it then counts by the advisory's list alone.
 */
export function fixesAdvisory(advisory: AdvisoryRecord, version: string | null, declared: readonly string[] | null | undefined): boolean {
  if (version === null || listed(advisory.revoked, version)) return false;
  return (declared ?? []).includes(advisory.id) || listed(advisory.fixedIn, version);
}

export interface AdvisoryChange {
  title?: string;
  severity?: string;
  fixedIn?: string[];
}

/** What `advisory add` makes of the record there is (or null): fields given replace, versions given join the list. */
export function addToAdvisory(current: AdvisoryRecord | null, id: string, change: AdvisoryChange, now = new Date().toISOString()): AdvisoryRecord {
  const base: AdvisoryRecord = current ?? { id, title: null, severity: null, fixedIn: [], revoked: [], createdAt: now, updatedAt: now };
  const fixedIn = change.fixedIn ?? [];
  return {
    ...base,
    title: change.title ?? base.title,
    severity: change.severity ?? base.severity,
    fixedIn: [...new Set([...base.fixedIn, ...fixedIn])],
    // Naming a version as a fix again is a decision taken after its revocation: it counts again.
    revoked: base.revoked.filter((v) => !fixedIn.includes(v)),
    updatedAt: now,
  };
}

/** What `advisory revoke` makes of the record: the version's claim withdrawn, whatever lists or declares it. */
export function revokeInAdvisory(current: AdvisoryRecord, version: string, now = new Date().toISOString()): AdvisoryRecord {
  return {
    ...current,
    fixedIn: current.fixedIn.filter((v) => v !== version),
    revoked: current.revoked.includes(version) ? current.revoked : [...current.revoked, version],
    updatedAt: now,
  };
}

/** The advisories bucket, created where missing when `create`; otherwise null when no advisory was ever added. */
export async function openAdvisories(nc: NatsConnection, create: true): Promise<KV>;
export async function openAdvisories(nc: NatsConnection, create: false): Promise<KV | null>;
export async function openAdvisories(nc: NatsConnection, create: boolean): Promise<KV | null> {
  const kvm = new Kvm(jetstream(nc, { timeout: 10_000 }));
  try {
    if (create) return await kvm.create(Bucket.advisories, { history: 5 });
    const kv = await kvm.open(Bucket.advisories);
    // Opening binds a name without asking the server; its status says whether the bucket exists.
    await kv.status();
    return kv;
  } catch (cause) {
    if (!create && cause instanceof JetStreamApiError && cause.code === JetStreamApiCodes.StreamNotFound) return null;
    throw new MoltError(ErrorCode.FLEET, `cannot open the fleet's advisories (is nats-server running with -js?): ${(cause as Error).message}`, { cause });
  }
}

export async function readAdvisory(kv: KV | null, id: string): Promise<AdvisoryRecord> {
  const entry = kv === null ? null : await kv.get(id);
  return present(entry === null || entry.operation !== "PUT" ? null : decodeRecord<AdvisoryRecord>(entry.value, `advisory ${id}`), id);
}

/** The record, or ERR_NO_ADVISORY when there is none. */
export function present(record: AdvisoryRecord | null, id: string): AdvisoryRecord {
  if (record === null) throw new MoltError(ERR_NO_ADVISORY, `no advisory "${id}" in this fleet (molt fleet advisory add ${id} --nats … creates it)`);
  return record;
}

/**
 * Changes an advisory by read, change, compare-and-set; read again and
 * changed again when another writer got there first, so two people
 * revoking and adding at once lose neither change.
 */
export async function changeAdvisory(kv: KV, id: string, change: (current: AdvisoryRecord | null) => AdvisoryRecord): Promise<AdvisoryRecord> {
  for (;;) {
    const entry = await kv.get(id);
    const current = entry === null || entry.operation !== "PUT" ? null : decodeRecord<AdvisoryRecord>(entry.value, `advisory ${id}`);
    const next = change(current);
    try {
      if (entry === null) await kv.create(id, encodeRecord(next));
      else await kv.update(id, encodeRecord(next), entry.revision);
      return next;
    } catch (err) {
      if (!isStaleRevision(err)) throw err;
    }
  }
}
