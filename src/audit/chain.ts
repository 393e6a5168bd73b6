/**
 * Per-identity audit chains: the single source of truth for what an identity did, and for the
 * usage that policy depends on (rate-limit counts, card spend and reservations, idempotency keys).
 *
 * `commit(identityId, build)` runs `build` inside the identity's exclusive section, after catching
 * up on entries any other process appended, so that policy evaluation and the entry that records
 * its decision are one atomic step across processes: two processes can never both spend the last
 * dollar or the last rate-limit slot. Concurrent commits for one identity in this process are
 * batched into one write and one fsync (group commit) — each build still sees the state left by
 * the one before it.
 */
import { createHmac } from "node:crypto";
import { b64, sha256hex } from "../crypto/encoding.js";
import { sign as edSign } from "../crypto/ed25519.js";
import { hashesEqual } from "../crypto/tokens.js";
import type { AuditBackend, ChainCursor } from "../../store/types.js";
import { type AuditEntry, type EntryFields, ENTRY_VERSION, ZERO_HASH, bodyHash, sealingForms, signingStatement } from "./entry.js";
import { ChainVerification } from "./verification.js";
import type { PublicKeyInfo } from "./verify.js";

const DAY_MS = 24 * 60 * 60 * 1000;

export type Draft = EntryFields;

export interface Built<T> {
  draft?: Draft;
  value: T;
  /** For a key rotation: the new key's secret, which co-signs the entry. */
  cosign?: Uint8Array;
  /** The key id that must sign this entry (only the genesis entry names its own). */
  keyId?: string;
}

export interface SigningKey {
  keyId: string;
  secretKey: Uint8Array;
}

export interface Keyring {
  /** The secret key for `keyId` of the identity (pending keys included). */
  signer(identityId: string, keyId: string): Promise<SigningKey>;
  /** The first entry of an identity's log, written when its log is empty. */
  genesis(identityId: string): Promise<{ draft: Draft; keyId: string }>;
  /**
   * Makes what the registry publishes about the identity's keys (status, validity windows) agree
   * with `history`, the log's own account (see `ChainState.keyHistory`). Called under the chain's
   * exclusive section when a process first opens the chain and whenever it reads a key rotation
   * another process wrote, so a rotation interrupted between its log entry and its registry write
   * is completed from the log.
   */
  reconcileKeys?(identityId: string, history: KeyWindow[]): Promise<void>;
}

/** One key's time as the identity's signer, as the log records it. */
export interface KeyWindow {
  keyId: string;
  publicKey?: string;
  /** The time of the entry that made it the signer (the creation entry, or the rotation to it). */
  from: string;
  /** The time of the rotation entry that handed signing on (absent: still the signer). */
  to?: string;
}

/** An administrative intent whose process died before its result: what it was about to do. */
export interface OrphanedAdminIntent {
  seq: number;
  tool: string;
  /** The intent entry's own members (policy version and hash, incoming key, …). */
  detail: Record<string, unknown>;
}

/** What became of an orphaned administrative intent, decided from the store's actual state. */
export interface AdminOutcome {
  decision: "ok" | "failed" | "unknown";
  reason: string;
}

export interface IdemRecord {
  argsHash: string;
  intentSeq: number;
  t: number;
  outcome?: string;
  result?: Record<string, unknown>;
  receipt?: Receipt;
}

/**
 * What an agent's result carries about the entry that records it: where it is and its signature,
 * and — as the entry itself states them, under its signature — the tenant, the policy (version and
 * hash) and the approval it was made under (`sigil receipt explain` checks each against the log).
 */
export interface Receipt {
  identityId: string;
  seq: number;
  hash: string;
  keyId: string;
  signature: string;
  tenantId?: string;
  policyVersion?: number;
  policyHash?: string;
  approvalId?: string;
}

export function receiptOf(e: AuditEntry): Receipt {
  return {
    identityId: e.identity,
    seq: e.seq,
    hash: e.hash,
    keyId: e.keyId,
    signature: e.sig,
    ...(typeof e.tenant === "string" ? { tenantId: e.tenant } : {}),
    ...(typeof e.policyVersion === "number" ? { policyVersion: e.policyVersion } : {}),
    ...(typeof e.policyHash === "string" ? { policyHash: e.policyHash } : {}),
    ...(typeof e.approvalId === "string" ? { approvalId: e.approvalId } : {}),
  };
}

export class ChainCorruptError extends Error {}

/**
 * A chain state snapshot: everything `ChainState` derives from the log up to `seq`, so that a new
 * process can read it plus the entries after `cursor` instead of replaying the whole log.
 * Records older than two days before the last entry are left out (no decision looks further back
 * than a day; the second day is slack for a clock that moved back), open intents never are.
 */
export interface SnapshotBody {
  identity: string;
  seq: number;
  head: string;
  cursor: number;
  /** Time (ms) of the entry at `seq`. */
  lastT: number;
  activeKeyId?: string;
  policyVersion: number;
  /** Whether the log records the identity's revocation (see `ChainState.revoked`). */
  revoked?: boolean;
  /** The token reference of the last completed token rotation (see `ChainState.tokenRef`). */
  tokenRef?: string;
  /** The highest policy version a completed policy update installed (see `ChainState.policyDone`). */
  policyDone: number;
  rate: Array<[string, number[]]>;
  spend: Array<[number, number, number]>;
  idem: Array<[string, IdemRecord]>;
  idemByIntent: Array<[number, string]>;
  open: Array<[number, OpenIntent]>;
  /** Times (ms) of the individual refusal entries of the last minute (see `refusalsSince`). */
  refusals?: number[];
  /** Approvals asked in the kept window, and pending ones (see `ApprovalState`). */
  approvals?: ApprovalState[];
  /** Recipients ever sent to successfully (policy `approval.newRecipients`). */
  contacted?: string[];
  /** The log's key history (see `ChainState.keyHistory`). A snapshot without it is not used. */
  keys: KeyWindow[];
  /** Payment mandates not expired for more than the kept window (see `MandateState`). */
  mandates?: MandateState[];
  /** Secrets handed out by vault_get in the kept window (see `ChainState.vaultReadsSince`). */
  vaultReads: VaultRead[];
  /** OAuth grants whose last recorded change is inside `GRANT_KEEP_MS` (see `ChainState.oauthGrant`). */
  grants: Array<[string, LoggedGrant]>;
}

/**
 * An OAuth grant as the identity's log records it (src/oauth/grants.ts): the highest token
 * generation an `ok` `oauth_tokens_issued` installed, whether an `ok` `oauth_revoked` ended it, and
 * the time (ms) of the last of those. A grant record behind this (revocation gone, an older
 * generation) is an older copy put back into the store.
 */
export interface LoggedGrant {
  generation: number;
  revoked: boolean;
  t: number;
}

/**
 * How long a grant's logged state is kept after its last change: a refresh token lives 30 days, so
 * no copy of a grant older than this can hold a token that still works (a day of slack).
 */
export const GRANT_KEEP_MS = 31 * DAY_MS;

/** A secret vault_get handed out, as the log records it: its intent's time, the name and the version. */
export interface VaultRead {
  t: number;
  name: string;
  version: number;
}

/** The admin change that acknowledges vault reads the exfiltration guard's journal lost (its `ok` result removes them). */
export const GUARD_RESET_TOOL = "guard_reset";

/** The tools whose recipients count as contacted once they succeed (policy `approval.newRecipients`). */
const RECIPIENT_TOOLS = new Set(["send_email", "send_sms", "place_call"]);

/**
 * One approval as the identity's log says it stands (docs/ARCHITECTURE.md, "Approvals"): asked by
 * an `approval_requested` entry, decided by `approval_decided` entries (quorum: distinct approvers),
 * used by the intent (or call) entry that carries its `approvalId`, closed by the refusal that
 * carries it (`expired` with reason `approval_timeout`, else `denied`). The log is the authority: every decision and every use
 * is checked against this state inside the chain's exclusive section.
 */
export interface ApprovalState {
  id: string;
  /** The tool of the action, its hash (normalised arguments) and the policy version it was asked under. */
  tool: string;
  actionHash: string;
  policyVersion: number;
  idempotencyKey?: string;
  tenantId: string;
  approvers: string[];
  quorum: number;
  via: string[];
  requirePasskey?: boolean;
  requestedAt: number;
  expiresAt: number;
  status: "pending" | "approved" | "denied" | "expired" | "used";
  /** Who decided, in order: approver id (absent for a client-attested answer), decision, how. */
  decisions: Array<{ approverId?: string; decision: "approve" | "deny"; via: string; t: number }>;
}

/**
 * A payment mandate as the identity's log records it (src/mandates/): issued by the `ok` result of
 * `create_payment_mandate` (which records its constraints and the hashes of its two tokens), used
 * by each allowed `present_payment_mandate` intent (its amount and transaction id), a use released
 * by that intent's `failed` result. Presentations are decided against this under the chain's lock.
 */
export interface MandateState {
  id: string;
  checkoutHash: string;
  paymentHash: string;
  currency: string;
  maxAmountCents: number;
  budgetCents?: number;
  payeeId: string;
  /** Expiry (ms). */
  exp: number;
  issuedAt: number;
  /** Whether a human approved its issuance (its issuing intent used an approval). */
  approved: boolean;
  uses: Array<{ seq: number; amountCents: number; purchase?: string }>;
}

const MANDATE_ISSUE_TOOL = "create_payment_mandate";
const MANDATE_USE_TOOL = "present_payment_mandate";

/** The mandate an ok issuing result records, if it is one. */
function issuedMandate(e: AuditEntry, t: number): MandateState | undefined {
  const r = e.result as Record<string, unknown> | undefined;
  const c = r?.constraints as Record<string, unknown> | undefined;
  if (!r || !c || typeof r.mandateId !== "string" || typeof r.checkoutHash !== "string" || typeof r.paymentHash !== "string") return undefined;
  if (typeof c.currency !== "string" || typeof c.maxAmountCents !== "number" || typeof c.payeeId !== "string" || typeof c.expiresAt !== "string") return undefined;
  return {
    id: r.mandateId,
    checkoutHash: r.checkoutHash,
    paymentHash: r.paymentHash,
    currency: c.currency,
    maxAmountCents: c.maxAmountCents,
    ...(typeof c.budgetCents === "number" ? { budgetCents: c.budgetCents } : {}),
    payeeId: c.payeeId,
    exp: Date.parse(c.expiresAt),
    issuedAt: t,
    approved: typeof e.approvalId === "string",
    uses: [],
  };
}

/**
 * An approver as its tenant's log records it (src/tenant/log.ts): added by the `ok` result of an
 * `approver_added` intent (or adopted by the log's creation entry, for a home older than tenant
 * logs), removed by the `ok` result of `approver_removed`. `from`/`removedAt` are the times of
 * those entries (an adopted approver's are its record's).
 */
export interface RosterApprover {
  id: string;
  keyId: string;
  publicKey: string;
  from: string;
  removedAt?: string;
}

/** A passkey as its tenant's log records it: registered by the `ok` result of `passkey_registered` (or adopted). */
export interface RosterPasskey {
  credentialId: string;
  approverId: string;
  /** The credential's COSE public key (base64url). */
  publicKey: string;
  /** The relying party it was registered for (absent for an adopted one). */
  rpId?: string;
  origin?: string;
  from: string;
}

/** The tenant-log tools whose `ok` result changes the roster. */
export const APPROVER_ADDED = "approver_added";
export const APPROVER_REMOVED = "approver_removed";
export const PASSKEY_REGISTERED = "passkey_registered";

/** The entry that summarises refusals past the per-minute limit (src/pipeline/throttle.ts). */
export const THROTTLE_SUMMARY_TOOL = "refusals_throttled";
const REFUSAL_WINDOW_MS = 60_000;

interface OpenIntent {
  tool: string;
  t: number;
  instance?: string;
  session?: string;
  /** Whom a sending intent addresses (counted as contacted when its result is ok). */
  recipients?: string[];
  /** For an administrative intent: its own members, from which recovery decides its outcome. */
  detail?: Record<string, unknown>;
}

/** Recipients of a sending tool's arguments as the log records them (addresses are kept plain). */
function recipientsOf(tool: string, args: unknown): string[] | undefined {
  if (!RECIPIENT_TOOLS.has(tool) || args === null || typeof args !== "object") return undefined;
  const a = args as { to?: unknown; cc?: unknown };
  const out: string[] = [];
  for (const v of [a.to, a.cc]) {
    for (const x of Array.isArray(v) ? v : v === undefined ? [] : [v]) if (typeof x === "string") out.push(x.trim().toLowerCase());
  }
  return out.length > 0 ? out : undefined;
}

/** The members every entry has; an administrative intent's other members are its detail. */
const ENVELOPE = new Set(["v", "seq", "ts", "identity", "session", "tool", "phase", "decision", "instance", "keyId", "prev", "hash", "sig", "sigNew"]);

/**
 * v2 added `revoked` and `tokenRef`, v3 `policyDone`, v4 `vaultReads`, v5 `mandates`, v6 `grants`:
 * an older snapshot is ignored (the log replayed once), never read as "not revoked", "no policy
 * update completed", "no secret read", "no mandate used" or "no grant revoked".
 */
export const SNAPSHOT_FORMAT = "sigil-chain-snapshot/v6";
const SNAPSHOT_KEEP_MS = 2 * DAY_MS;

function snapshotMac(key: Buffer, identityId: string, body: string): string {
  return createHmac("sha256", key).update(`${SNAPSHOT_FORMAT}\n${identityId}\n`).update(body).digest("base64url");
}

/** `<format>\n<HMAC-SHA256 under a master-key subkey>\n<body JSON>`. */
export function encodeSnapshot(key: Buffer, body: SnapshotBody): string {
  const json = JSON.stringify(body);
  return `${SNAPSHOT_FORMAT}\n${snapshotMac(key, body.identity, json)}\n${json}`;
}

/**
 * The body of a snapshot if it is one of ours, of this format, for this identity, and its MAC
 * checks out; undefined otherwise (it is then ignored and the log replayed). Whether it matches
 * the log is checked by the caller (the entry before its cursor must be its seq and head).
 */
export function decodeSnapshot(key: Buffer, identityId: string, text: string): SnapshotBody | undefined {
  const a = text.indexOf("\n");
  const b = a < 0 ? -1 : text.indexOf("\n", a + 1);
  if (b < 0 || text.slice(0, a) !== SNAPSHOT_FORMAT) return undefined;
  const json = text.slice(b + 1);
  if (!hashesEqual(text.slice(a + 1, b), snapshotMac(key, identityId, json))) return undefined;
  let body: SnapshotBody;
  try {
    body = JSON.parse(json) as SnapshotBody;
  } catch {
    return undefined;
  }
  const ok =
    body !== null &&
    typeof body === "object" &&
    body.identity === identityId &&
    Number.isSafeInteger(body.seq) &&
    body.seq > 0 &&
    typeof body.head === "string" &&
    Number.isSafeInteger(body.cursor) &&
    body.cursor > 0 &&
    Number.isSafeInteger(body.policyDone) &&
    [body.rate, body.spend, body.idem, body.idemByIntent, body.open, body.keys, body.vaultReads, body.grants].every(Array.isArray);
  return ok ? body : undefined;
}

/** What one identity's log says, kept current by replaying entries. */
export class ChainState {
  seq = 0;
  head = ZERO_HASH;
  activeKeyId?: string;
  /** The highest policy version the log has recorded (a version is never reused). */
  policyVersion = 0;
  /**
   * What the log says of the registry record, so that an older (validly MAC'd) record put back
   * into the store is caught: the identity was revoked, and which token the last completed
   * rotation installed (a keyed reference, never the token or its stored hash).
   */
  revoked = false;
  tokenRef?: string;
  /** The highest policy version a completed (`ok`) policy update installed: a record below it is older than the log. */
  policyDone = 0;
  cursor: ChainCursor = { position: 0 };
  /** Time (ms) of the last entry applied. */
  lastT = 0;
  private readonly rate = new Map<string, number[]>();
  private readonly spend = new Map<number, { t: number; amount: number }>();
  /** Times of individual refusal entries, oldest first, trimmed to the last minute. */
  private refusals: number[] = [];
  private readonly idem = new Map<string, IdemRecord>();
  private readonly idemByIntent = new Map<number, string>();
  private readonly open = new Map<number, OpenIntent>();
  private readonly approvals = new Map<string, ApprovalState>();
  /** (tool, idempotency key) → the latest approval asked for it. */
  private readonly approvalByIdem = new Map<string, string>();
  private readonly contactedSet = new Set<string>();
  private keys: KeyWindow[] = [];
  /** vault_get calls with an `ok` result, oldest first, trimmed to about a day (see `vaultReadsSince`). */
  private vaultReads: VaultRead[] = [];
  private readonly mandates = new Map<string, MandateState>();
  private readonly grants = new Map<string, LoggedGrant>();
  /** A tenant's log only: its approvers and their passkeys (see `RosterApprover`). */
  private readonly rosterApprovers = new Map<string, RosterApprover>();
  private readonly rosterPasskeys = new Map<string, RosterPasskey>();

  constructor(readonly identityId: string) {}

  /** What the log says of OAuth grant `id` of this identity (undefined: nothing recorded in the kept window). */
  oauthGrant(id: string): LoggedGrant | undefined {
    const g = this.grants.get(id);
    return g && { ...g };
  }

  /** A tenant's log: the approver as the log records it (undefined: never added). */
  approver(id: string): RosterApprover | undefined {
    const a = this.rosterApprovers.get(id);
    return a && { ...a };
  }

  /** A tenant's log: every approver it records, in the order they were added. */
  approvers(): RosterApprover[] {
    return [...this.rosterApprovers.values()].map((a) => ({ ...a }));
  }

  /** A tenant's log: the passkey (by credential id) as the log records its registration. */
  passkey(credentialId: string): RosterPasskey | undefined {
    const p = this.rosterPasskeys.get(credentialId);
    return p && { ...p };
  }

  passkeys(): RosterPasskey[] {
    return [...this.rosterPasskeys.values()].map((p) => ({ ...p }));
  }

  /** The approvers and passkeys a tenant log's creation entry adopts (what the home held when the log began). */
  private adopt(e: AuditEntry): void {
    for (const a of Array.isArray(e.approvers) ? (e.approvers as Array<Record<string, unknown>>) : []) {
      if (typeof a?.approverId !== "string" || typeof a.keyId !== "string" || typeof a.publicKey !== "string") continue;
      this.rosterApprovers.set(a.approverId, {
        id: a.approverId,
        keyId: a.keyId,
        publicKey: a.publicKey,
        from: typeof a.createdAt === "string" ? a.createdAt : e.ts,
        ...(typeof a.removedAt === "string" ? { removedAt: a.removedAt } : {}),
      });
    }
    for (const p of Array.isArray(e.passkeys) ? (e.passkeys as Array<Record<string, unknown>>) : []) {
      if (typeof p?.credentialId !== "string" || typeof p.approverId !== "string" || typeof p.publicKey !== "string") continue;
      this.rosterPasskeys.set(p.credentialId, { credentialId: p.credentialId, approverId: p.approverId, publicKey: p.publicKey, from: typeof p.createdAt === "string" ? p.createdAt : e.ts });
    }
  }

  /** What the `ok` result of a tenant-log change does to the roster (`d`: its intent's members). */
  private applyRoster(tool: string, d: Record<string, unknown>, ts: string): void {
    const id = typeof d.approverId === "string" ? d.approverId : undefined;
    if (!id) return;
    if (tool === APPROVER_ADDED && typeof d.approverKeyId === "string" && typeof d.approverPublicKey === "string" && !this.rosterApprovers.has(id)) {
      this.rosterApprovers.set(id, { id, keyId: d.approverKeyId, publicKey: d.approverPublicKey, from: ts });
    } else if (tool === APPROVER_REMOVED) {
      const a = this.rosterApprovers.get(id);
      if (a && a.removedAt === undefined) a.removedAt = ts;
    } else if (tool === PASSKEY_REGISTERED && typeof d.credentialId === "string" && typeof d.credentialPublicKey === "string" && !this.rosterPasskeys.has(d.credentialId)) {
      this.rosterPasskeys.set(d.credentialId, {
        credentialId: d.credentialId,
        approverId: id,
        publicKey: d.credentialPublicKey,
        ...(typeof d.rpId === "string" ? { rpId: d.rpId } : {}),
        ...(typeof d.origin === "string" ? { origin: d.origin } : {}),
        from: ts,
      });
    }
  }

  /** A payment mandate this identity was issued, with its uses, as the log records it. */
  mandate(id: string): MandateState | undefined {
    const m = this.mandates.get(id);
    return m && structuredClone(m);
  }

  /**
   * The secrets vault_get handed out whose intent is at or after `sinceMs`. The `ok` result is
   * written only after the exfiltration guard's journal recorded the value (src/pipeline/agent-call.ts,
   * `guardedReader`), so each of these must be in the journal while it is inside the guard's window:
   * one that is not was deleted or rolled back by whoever writes the store.
   */
  vaultReadsSince(sinceMs: number): VaultRead[] {
    let i = this.vaultReads.length;
    while (i > 0 && this.vaultReads[i - 1]!.t >= sinceMs) i--;
    return this.vaultReads.slice(i).map((r) => ({ ...r }));
  }

  /**
   * Every key that has signed this log, in order, with the time it took over and the time it
   * handed on: the first key from the creation entry, each next one from the rotation entry that
   * names it. This, not the registry, is the truth the published windows must match.
   */
  keyHistory(): KeyWindow[] {
    return this.keys.map((k) => ({ ...k }));
  }

  /** An approval of this identity as its log stands, with `expired` for a pending one past its expiry. */
  approval(id: string, nowMs?: number): ApprovalState | undefined {
    const a = this.approvals.get(id);
    if (!a) return undefined;
    if (a.status === "pending" && nowMs !== undefined && nowMs > a.expiresAt) return { ...a, status: "expired" };
    return a;
  }

  /** The latest approval asked for (tool, idempotency key), if any. */
  approvalFor(tool: string, key: string, nowMs?: number): ApprovalState | undefined {
    const id = this.approvalByIdem.get(idemKey(tool, key));
    return id === undefined ? undefined : this.approval(id, nowMs);
  }

  /** Whether this identity ever sent to `recipient` (lower-case address or E.164) with an ok result. */
  contacted(recipient: string): boolean {
    return this.contactedSet.has(recipient.trim().toLowerCase());
  }

  /** The state as a snapshot body (a deep copy: later entries do not change it). */
  toSnapshot(): SnapshotBody {
    const cutoff = this.lastT - SNAPSHOT_KEEP_MS;
    const rate: Array<[string, number[]]> = [];
    for (const [tool, times] of this.rate) {
      // The suffix after the last time older than the cutoff: countSince walks back from the end
      // and stops at the first time before its window, so nothing before that is ever counted.
      let i = times.length;
      while (i > 0 && times[i - 1]! >= cutoff) i--;
      if (i < times.length) rate.push([tool, times.slice(i)]);
    }
    const spend: Array<[number, number, number]> = [];
    for (const [seq, s] of this.spend) if (s.t >= cutoff) spend.push([seq, s.t, s.amount]);
    const referenced = new Set(this.idemByIntent.values());
    const idem: Array<[string, IdemRecord]> = [];
    for (const [k, r] of this.idem) if (r.t >= cutoff || referenced.has(k)) idem.push([k, structuredClone(r)]);
    // Sorted: the same state gives the same snapshot whatever order the maps were filled in.
    const byKey = <K extends string | number>(x: [K, ...unknown[]], y: [K, ...unknown[]]): number => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0);
    rate.sort(byKey);
    spend.sort(byKey);
    idem.sort(byKey);
    return {
      identity: this.identityId,
      seq: this.seq,
      head: this.head,
      cursor: this.cursor.position,
      lastT: this.lastT,
      ...(this.activeKeyId !== undefined ? { activeKeyId: this.activeKeyId } : {}),
      policyVersion: this.policyVersion,
      ...(this.revoked ? { revoked: true } : {}),
      ...(this.tokenRef !== undefined ? { tokenRef: this.tokenRef } : {}),
      policyDone: this.policyDone,
      rate,
      spend,
      idem,
      idemByIntent: [...this.idemByIntent].sort(byKey),
      open: [...this.open].map(([seq, o]): [number, OpenIntent] => [seq, { ...o }]).sort(byKey),
      refusals: this.refusals.filter((x) => x >= this.lastT - REFUSAL_WINDOW_MS),
      approvals: [...this.approvals.values()].filter((a) => a.requestedAt >= cutoff || a.status === "pending" || a.status === "approved").map((a) => structuredClone(a)).sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)),
      contacted: [...this.contactedSet].sort(),
      keys: this.keyHistory(),
      vaultReads: this.vaultReads.filter((r) => r.t >= cutoff).map((r) => ({ ...r })),
      grants: [...this.grants].filter(([, g]) => g.t >= this.lastT - GRANT_KEEP_MS).map(([id, g]): [string, LoggedGrant] => [id, { ...g }]).sort(byKey),
      mandates: [...this.mandates.values()].filter((m) => m.exp >= cutoff || m.uses.some((u) => this.open.has(u.seq))).map((m) => structuredClone(m)).sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)),
    };
  }

  static fromSnapshot(b: SnapshotBody): ChainState {
    const s = new ChainState(b.identity);
    s.seq = b.seq;
    s.head = b.head;
    s.cursor = { position: b.cursor };
    s.lastT = b.lastT;
    if (b.activeKeyId !== undefined) s.activeKeyId = b.activeKeyId;
    s.policyVersion = b.policyVersion;
    if (b.revoked === true) s.revoked = true;
    if (typeof b.tokenRef === "string") s.tokenRef = b.tokenRef;
    s.policyDone = b.policyDone;
    for (const [tool, times] of b.rate) s.rate.set(tool, [...times]);
    for (const [seq, t, amount] of b.spend) s.spend.set(seq, { t, amount });
    for (const [k, r] of b.idem) s.idem.set(k, { ...r });
    for (const [seq, k] of b.idemByIntent) s.idemByIntent.set(seq, k);
    for (const [seq, o] of b.open) s.open.set(seq, { ...o });
    if (Array.isArray(b.refusals)) s.refusals = b.refusals.filter((x) => typeof x === "number");
    if (Array.isArray(b.approvals)) {
      for (const a of b.approvals.slice().sort((x, y) => x.requestedAt - y.requestedAt)) {
        s.approvals.set(a.id, structuredClone(a));
        if (a.idempotencyKey !== undefined) s.approvalByIdem.set(idemKey(a.tool, a.idempotencyKey), a.id);
      }
    }
    if (Array.isArray(b.contacted)) for (const r of b.contacted) if (typeof r === "string") s.contactedSet.add(r);
    s.keys = b.keys.map((k) => ({ ...k }));
    s.vaultReads = b.vaultReads.map((r) => ({ ...r }));
    for (const [id, g] of b.grants) s.grants.set(id, { ...g });
    if (Array.isArray(b.mandates)) for (const m of b.mandates) if (m && typeof m.id === "string") s.mandates.set(m.id, structuredClone(m));
    return s;
  }

  apply(e: AuditEntry): void {
    if (e.seq !== this.seq + 1 || e.prev !== this.head) {
      throw new ChainCorruptError(`audit log of ${this.identityId} is broken at seq ${e.seq}`);
    }
    this.seq = e.seq;
    this.head = e.hash;
    const t = Date.parse(e.ts);
    this.lastT = t;
    if (e.seq === 1 && e.tool === "tenant_created") this.adopt(e);
    if (e.seq === 1 && !this.activeKeyId) {
      this.activeKeyId = e.keyId;
      this.keys = [{ keyId: e.keyId, ...(typeof e.publicKey === "string" ? { publicKey: e.publicKey } : {}), from: e.ts }];
    }
    if (typeof e.newKeyId === "string") {
      this.activeKeyId = e.newKeyId;
      const last = this.keys[this.keys.length - 1];
      if (last) last.to = e.ts;
      this.keys.push({ keyId: e.newKeyId, ...(typeof e.newPublicKey === "string" ? { publicKey: e.newPublicKey } : {}), from: e.ts });
    }
    if (e.tool === "policy_updated" && typeof e.policyVersion === "number") this.policyVersion = Math.max(this.policyVersion, e.policyVersion);
    if (e.tool === "identity_revoked" && e.decision === "ok") this.revoked = true;
    if ((e.phase === "intent" || e.phase === "call") && e.decision === "allow") {
      let times = this.rate.get(e.tool);
      if (!times) this.rate.set(e.tool, (times = []));
      times.push(t);
      if (times.length > 64 && times[0]! < t - DAY_MS) this.rate.set(e.tool, times.filter((x) => x >= t - DAY_MS));
    }
    if (e.decision === "deny" && e.tool !== THROTTLE_SUMMARY_TOOL) {
      this.refusals.push(t);
      if (this.refusals.length > 256) this.refusals = this.refusals.filter((x) => x >= t - REFUSAL_WINDOW_MS);
    }
    this.applyApproval(e, t);
    if (e.phase === "intent" && e.decision === "allow") {
      const recipients = recipientsOf(e.tool, e.args);
      const open: OpenIntent = { tool: e.tool, t, instance: e.instance as string | undefined, session: e.session, ...(recipients ? { recipients } : {}) };
      if (e.session === "admin") {
        const detail: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(e)) if (!ENVELOPE.has(k)) detail[k] = v;
        open.detail = detail;
      }
      this.open.set(e.seq, open);
      if (typeof e.amountCents === "number") this.spend.set(e.seq, { t, amount: e.amountCents });
      if (e.tool === MANDATE_USE_TOOL) {
        const a = e.args as Record<string, unknown> | undefined;
        const m = typeof a?.mandateId === "string" ? this.mandates.get(a.mandateId) : undefined;
        if (m) m.uses.push({ seq: e.seq, amountCents: typeof e.amountCents === "number" ? e.amountCents : 0, ...(typeof a?.purchase === "string" ? { purchase: a.purchase } : {}) });
      }
      if (e.idem) {
        const k = idemKey(e.tool, e.idem.key);
        this.idem.set(k, { argsHash: e.idem.argsHash, intentSeq: e.seq, t });
        this.idemByIntent.set(e.seq, k);
      }
    }
    if (e.phase === "result" && typeof e.intent === "number") {
      const intent = this.open.get(e.intent);
      this.open.delete(e.intent);
      if (e.decision === "ok" && typeof intent?.detail?.tokenRef === "string") this.tokenRef = intent.detail.tokenRef;
      if (e.decision === "ok" && intent?.tool === "policy_updated" && typeof intent.detail?.policyVersion === "number") {
        this.policyDone = Math.max(this.policyDone, intent.detail.policyVersion);
      }
      // Money that provably did not move is released; "unknown" stays reserved.
      if (e.decision === "failed") this.spend.delete(e.intent);
      if (e.decision === "failed" && intent?.tool === MANDATE_USE_TOOL) {
        for (const m of this.mandates.values()) m.uses = m.uses.filter((u) => u.seq !== e.intent);
      }
      if (e.decision === "ok" && e.tool === MANDATE_ISSUE_TOOL) {
        const m = issuedMandate(e, t);
        if (m && !this.mandates.has(m.id)) this.mandates.set(m.id, m);
      }
      if (e.decision === "ok" && intent?.recipients) for (const r of intent.recipients) this.contactedSet.add(r);
      if (e.decision === "ok" && (intent?.tool === "oauth_tokens_issued" || intent?.tool === "oauth_revoked") && typeof intent.detail?.grant === "string") {
        const g = this.grants.get(intent.detail.grant) ?? { generation: 0, revoked: false, t };
        if (intent.tool === "oauth_revoked") g.revoked = true;
        else if (typeof intent.detail.generation === "number") g.generation = Math.max(g.generation, intent.detail.generation);
        g.t = t;
        this.grants.set(intent.detail.grant, g);
      }
      if (e.decision === "ok" && intent?.tool === GUARD_RESET_TOOL && Array.isArray(intent.detail?.reads)) {
        // An administrator acknowledged these reads as lost to the guard (src/identity/secrets.ts
        // `resetGuard`): the journal is no longer required to hold them.
        const gone = new Set((intent.detail.reads as VaultRead[]).map((r) => `${r.t}\n${r.version}\n${r.name}`));
        this.vaultReads = this.vaultReads.filter((r) => !gone.has(`${r.t}\n${r.version}\n${r.name}`));
      }
      if (e.decision === "ok" && intent?.detail) this.applyRoster(intent.tool, intent.detail, e.ts);
      if (e.decision === "ok" && intent?.tool === "vault_get") {
        const r = e.result as { name?: unknown; version?: unknown } | undefined;
        if (typeof r?.name === "string" && typeof r.version === "number") {
          // Kept in intent-time order (results of concurrent calls may land out of it).
          let i = this.vaultReads.length;
          while (i > 0 && this.vaultReads[i - 1]!.t > intent.t) i--;
          this.vaultReads.splice(i, 0, { t: intent.t, name: r.name, version: r.version });
          if (this.vaultReads.length > 64 && this.vaultReads[0]!.t < t - 2 * DAY_MS) this.vaultReads = this.vaultReads.filter((x) => x.t >= t - 2 * DAY_MS);
        }
      }
      const k = intent ? this.idemByIntent.get(e.intent) : undefined;
      const rec = k === undefined ? undefined : this.idem.get(k);
      if (k !== undefined && rec) {
        this.idemByIntent.delete(e.intent);
        // A definite failure frees the key for a retry; success and "unknown" are replayed.
        if (e.decision === "failed") this.idem.delete(k);
        else Object.assign(rec, { outcome: e.decision, result: e.result, receipt: receiptOf(e) });
      }
    }
  }

  /** What approval entries (and the entries that use or time out an approval) change. */
  private applyApproval(e: AuditEntry, t: number): void {
    if (e.tool === "approval_requested" && typeof e.approvalId === "string") {
      const r = e as Record<string, unknown>;
      const a: ApprovalState = {
        id: e.approvalId,
        tool: String(r.forTool),
        actionHash: String(r.actionHash),
        policyVersion: Number(r.policyVersion),
        tenantId: String(r.tenantId),
        approvers: Array.isArray(r.approvers) ? (r.approvers as unknown[]).filter((x): x is string => typeof x === "string") : [],
        quorum: typeof r.quorum === "number" ? r.quorum : 1,
        via: Array.isArray(r.via) ? (r.via as unknown[]).filter((x): x is string => typeof x === "string") : [],
        ...(r.requirePasskey === true ? { requirePasskey: true } : {}),
        requestedAt: t,
        expiresAt: Date.parse(String(r.expiresAt)),
        status: "pending",
        decisions: [],
      };
      if (typeof r.idempotencyKey === "string") {
        a.idempotencyKey = r.idempotencyKey;
        this.approvalByIdem.set(idemKey(a.tool, r.idempotencyKey), a.id);
      }
      this.approvals.set(a.id, a);
      return;
    }
    if (typeof e.approvalId !== "string") return;
    const a = this.approvals.get(e.approvalId);
    if (!a) return;
    if (e.tool === "approval_decided") {
      if (a.status !== "pending") return;
      const decision = e.decision === "approved" ? "approve" : e.decision === "denied" ? "deny" : undefined;
      if (!decision) return;
      const approverId = typeof e.approverId === "string" ? e.approverId : undefined;
      if (approverId !== undefined && a.decisions.some((d) => d.approverId === approverId)) return;
      const via = String(e.via);
      a.decisions.push({ ...(approverId !== undefined ? { approverId } : {}), decision, via, t });
      if (decision === "deny") a.status = "denied";
      else if (via === "client-attested") a.status = "approved";
      else if (a.decisions.filter((d) => d.decision === "approve" && d.approverId !== undefined).length >= a.quorum) a.status = "approved";
      return;
    }
    if ((e.phase === "intent" || e.phase === "call") && e.decision === "allow" && a.status === "approved") a.status = "used";
    // The refusal that ends the waiting call closes an approval still pending: timed out, or (the
    // client's question went unanswered) refused.
    else if (e.decision === "deny" && a.status === "pending") a.status = e.reason === "approval_timeout" ? "expired" : "denied";
  }

  /** How many individual refusal entries the log holds from `sinceMs` on (at most the last minute's). */
  refusalsSince(sinceMs: number): number {
    let n = 0;
    for (let i = this.refusals.length - 1; i >= 0 && this.refusals[i]! >= sinceMs; i--) n++;
    return n;
  }

  countSince(tool: string, sinceMs: number): number {
    const times = this.rate.get(tool);
    if (!times) return 0;
    let n = 0;
    for (let i = times.length - 1; i >= 0 && times[i]! >= sinceMs; i--) n++;
    return n;
  }

  spentSince(sinceMs: number): number {
    let sum = 0;
    for (const s of this.spend.values()) if (s.t >= sinceMs) sum += s.amount;
    return sum;
  }

  idempotency(tool: string, key: string, nowMs: number): IdemRecord | undefined {
    const r = this.idem.get(idemKey(tool, key));
    return r && r.t >= nowMs - DAY_MS ? r : undefined;
  }

  openIntents(): Array<{ seq: number; tool: string; t: number; instance?: string; session?: string; detail?: Record<string, unknown> }> {
    return [...this.open.entries()].map(([seq, v]) => ({ seq, ...v }));
  }

  /** Whether the intent at `seq` is still without a result. */
  isOpen(seq: number): boolean {
    return this.open.has(seq);
  }
}

const idemKey = (tool: string, key: string): string => `${tool}\u0000${key}`;

interface Pending {
  build: (state: ChainState) => Built<unknown> | Promise<Built<unknown>>;
  resolve: (v: { value: unknown; entry?: AuditEntry }) => void;
  reject: (err: unknown) => void;
}

export interface ChainOptions {
  backend: AuditBackend;
  keyring: Keyring;
  now?: () => number;
  /** This process's instance id, and a way to tell whether another instance is still alive. */
  instanceId?: string;
  instanceAlive?: (instanceId: string) => Promise<boolean | undefined>;
  /**
   * Key (derived from the master key) that authenticates state snapshots; without it no snapshot
   * is written or read and every new process replays the whole log.
   */
  snapshotKey?: Buffer;
  /** A snapshot is written (off the hot path) once this many entries follow the last one. */
  snapshotEvery?: number;
  /**
   * Decides, from the store's actual state, what became of an administrative intent whose process
   * died before writing its result (src/identity/identities.ts). Without it such an intent is
   * recorded `unknown`, like an agent's.
   */
  adminOutcome?: (identityId: string, intent: OrphanedAdminIntent) => Promise<AdminOutcome>;
  /**
   * The keys an identity's log must verify under (its published keys), for the chains'
   * verification status (`AuditChains.verification`); without it every verification fails.
   */
  trustedKeys?: (identityId: string) => Promise<PublicKeyInfo[]>;
}

export const SNAPSHOT_EVERY = 1000;

export class AuditChains {
  private readonly states = new Map<string, ChainState>();
  private readonly queues = new Map<string, Pending[]>();
  private readonly flushing = new Set<string>();
  private readonly now: () => number;
  /** Per identity: the seq of the last snapshot read or written by this process. */
  private readonly snapshotSeq = new Map<string, number>();
  /** Snapshot writes under way (at most one per identity). */
  private readonly snapshotting = new Map<string, Promise<void>>();
  /** Identities whose registry key windows have not been checked against the log since it last changed. */
  private readonly keysUnsettled = new Set<string>();
  /**
   * Per identity: the furthest entry (seq, hash) this process has seen in the log. The log only
   * grows, so a log that, read again, ends before it or holds another entry there had its tail cut
   * (or was rewritten) by whoever writes the store: the chain is refused in this process from then
   * on (fail closed), instead of being rebuilt from what is left. Memory only: a new process
   * cannot tell (only a checkpoint kept elsewhere can, `sigil audit verify --checkpoint`).
   */
  private readonly seen = new Map<string, { seq: number; hash: string }>();

  /** Each log's verification status, told of every length the chains see a log reach (verification.ts). */
  readonly verification: ChainVerification;

  constructor(private readonly opts: ChainOptions) {
    this.now = opts.now ?? Date.now;
    this.verification = new ChainVerification({
      backend: opts.backend,
      keys: opts.trustedKeys ?? (() => Promise.reject(new Error("no trusted keys are configured"))),
      now: this.now,
    });
  }

  /**
   * The state a snapshot holds, if there is one that is authentic (MAC under the master-key
   * subkey, this identity, this format) and matches the log (the entry that ends at its cursor is
   * its seq and head). Anything else is ignored: the caller replays the log from the start.
   */
  private async loadSnapshot(identityId: string): Promise<ChainState | undefined> {
    const { backend, snapshotKey } = this.opts;
    if (!snapshotKey || !backend.readSnapshot || !backend.lineBefore) return undefined;
    try {
      const text = await backend.readSnapshot(identityId);
      const body = text === undefined ? undefined : decodeSnapshot(snapshotKey, identityId, text);
      if (!body) return undefined;
      const line = await backend.lineBefore(identityId, { position: body.cursor });
      if (line === undefined) return undefined;
      const anchor = parseLine(line, identityId);
      if (anchor.seq !== body.seq || anchor.hash !== body.head || anchor.identity !== identityId) return undefined;
      const state = ChainState.fromSnapshot(body);
      this.snapshotSeq.set(identityId, body.seq);
      return state;
    } catch {
      return undefined; // unreadable or malformed: replay
    }
  }

  /** Writes a snapshot of `state` in the background when enough entries followed the last one. */
  private maybeSnapshot(identityId: string, state: ChainState, force = false): Promise<void> | undefined {
    const { backend, snapshotKey } = this.opts;
    if (!snapshotKey || !backend.writeSnapshot) return undefined;
    const last = this.snapshotSeq.get(identityId) ?? 0;
    const every = this.opts.snapshotEvery ?? SNAPSHOT_EVERY;
    if (state.seq <= last || (!force && state.seq - last < every)) return undefined;
    if (this.snapshotting.has(identityId) || !Number.isFinite(state.lastT) || state.cursor.position <= 0) return undefined;
    // Taken now (synchronously), so later entries cannot change what is written.
    const body = state.toSnapshot();
    this.snapshotSeq.set(identityId, body.seq);
    const text = encodeSnapshot(snapshotKey, body);
    const p = backend
      .writeSnapshot(identityId, body.seq, text)
      .catch(() => {
        // A snapshot is an optimisation: a failed write costs the next process a longer replay.
        if (this.snapshotSeq.get(identityId) === body.seq) this.snapshotSeq.set(identityId, last);
      })
      .finally(() => this.snapshotting.delete(identityId));
    this.snapshotting.set(identityId, p);
    return p;
  }

  /** Writes a snapshot of every identity with entries since its last one, and waits for them. */
  async close(): Promise<void> {
    await Promise.all([...this.snapshotting.values()]);
    for (const [id, state] of this.states) this.maybeSnapshot(id, state, true);
    await Promise.all([...this.snapshotting.values()]);
  }

  /**
   * Appends at most one entry, built from the current state under the identity's exclusive
   * section. Resolves when the entry is durable.
   */
  commit<T>(identityId: string, build: (state: ChainState) => Built<T> | Promise<Built<T>>): Promise<{ value: T; entry?: AuditEntry }> {
    return new Promise((resolve, reject) => {
      let q = this.queues.get(identityId);
      if (!q) this.queues.set(identityId, (q = []));
      q.push({ build, resolve: resolve as Pending["resolve"], reject });
      if (!this.flushing.has(identityId)) void this.flush(identityId);
    });
  }

  /** Catches up on the log without writing (for reads that need current usage). */
  async state(identityId: string): Promise<ChainState> {
    await this.commit(identityId, () => ({ value: null }));
    return this.states.get(identityId)!;
  }

  private async flush(identityId: string): Promise<void> {
    this.flushing.add(identityId);
    try {
      for (;;) {
        const q = this.queues.get(identityId);
        if (!q || q.length === 0) break;
        const batch = q.splice(0, q.length);
        await this.runBatch(identityId, batch);
      }
    } finally {
      this.flushing.delete(identityId);
      this.queues.delete(identityId);
    }
  }

  /**
   * Intents left without a result by an instance that is no longer running (a crash) get their
   * result — never retried, never silently dropped. An agent's is recorded `unknown` (what a
   * provider did cannot be known here); an administrative one's (session `admin`) is decided from
   * the store's actual state: `ok` if the change is there, `failed` if it is not, `unknown` only
   * when the state cannot tell. Checked once per identity per process.
   */
  private async resolveOrphans(state: ChainState, append: (d: Draft) => Promise<AuditEntry>): Promise<void> {
    const alive = this.opts.instanceAlive;
    if (!alive) return;
    const verdicts = new Map<string, boolean | undefined>();
    for (const o of state.openIntents()) {
      if (!o.instance || o.instance === this.opts.instanceId) continue;
      if (!verdicts.has(o.instance)) verdicts.set(o.instance, await alive(o.instance));
      if (verdicts.get(o.instance) === false) {
        const outcome: AdminOutcome =
          o.session === "admin" && o.detail && this.opts.adminOutcome
            ? await this.opts.adminOutcome(state.identityId, { seq: o.seq, tool: o.tool, detail: o.detail })
            : { decision: "unknown", reason: "orphaned_intent" };
        await append({ tool: o.tool, phase: "result", intent: o.seq, decision: outcome.decision, reason: outcome.reason, session: o.session });
      }
    }
  }

  /** Brings the registry's key windows in line with the log (see `Keyring.reconcileKeys`); retried on the next batch if it fails. */
  private async settleKeys(state: ChainState): Promise<void> {
    const reconcile = this.opts.keyring.reconcileKeys;
    if (!reconcile || !this.keysUnsettled.has(state.identityId) || state.seq === 0) return;
    try {
      await reconcile.call(this.opts.keyring, state.identityId, state.keyHistory());
      this.keysUnsettled.delete(state.identityId);
    } catch {
      // The registry cannot be written now: signing follows the log regardless; try again later.
    }
  }

  private async runBatch(identityId: string, batch: Pending[]): Promise<void> {
    const firstLoad = !this.states.has(identityId);
    let state = this.states.get(identityId) ?? (await this.loadSnapshot(identityId)) ?? new ChainState(identityId);
    const outcomes: Array<{ ok: true; value: unknown; entry?: AuditEntry } | { ok: false; err: unknown }> = [];
    try {
      if (firstLoad) this.keysUnsettled.add(identityId);
      const seen = this.seen.get(identityId);
      const { cursor } = await this.opts.backend.withChain(identityId, state.cursor, async (view) => {
        for (const line of view.lines) {
          const e = parseLine(line, identityId);
          state.apply(e);
          if (seen && e.seq === seen.seq && e.hash !== seen.hash) throw new ChainCorruptError(`the audit log of ${identityId} was rewritten: entry ${seen.seq} is not the one this process saw`);
          // A rotation another process wrote: its registry write may not have happened (a crash).
          if (typeof e.newKeyId === "string") this.keysUnsettled.add(identityId);
        }
        if (seen && state.seq < seen.seq) {
          throw new ChainCorruptError(`the audit log of ${identityId} was cut back: it ends at entry ${state.seq}, but this process saw entry ${seen.seq}; nothing more is recorded for it here`);
        }
        const lines: string[] = [];
        const append = async (draft: Draft, keyId?: string, cosign?: Uint8Array): Promise<AuditEntry> => {
          const { entry, line } = await this.seal(state, identityId, draft, keyId, cosign);
          state.apply(entry);
          lines.push(line);
          return entry;
        };
        if (state.seq === 0) {
          const g = await this.opts.keyring.genesis(identityId);
          await append(g.draft, g.keyId);
        }
        if (firstLoad) await this.resolveOrphans(state, append);
        await this.settleKeys(state);
        if (view.torn) {
          // A crash tore the last write (never acknowledged: acks follow fsync). Replace it with a
          // signed record of what was discarded, never silently.
          await append({
            tool: "audit_recovery",
            phase: "event",
            decision: "repaired",
            reason: "torn_final_line",
            discardedBytes: view.torn.length,
            discardedSha256: sha256hex(view.torn),
          });
        }
        for (const p of batch) {
          try {
            const built = await p.build(state);
            const entry = built.draft ? await append(built.draft, built.keyId, built.cosign) : undefined;
            outcomes.push({ ok: true, value: built.value, entry });
          } catch (err) {
            if (err instanceof ChainCorruptError) throw err;
            outcomes.push({ ok: false, err });
          }
        }
        return { lines, value: null };
      });
      state.cursor = cursor;
      this.states.set(identityId, state);
      if (state.seq > (seen?.seq ?? 0)) this.seen.set(identityId, { seq: state.seq, hash: state.head });
      this.maybeSnapshot(identityId, state);
      this.verification.appended(identityId, state.seq);
    } catch (err) {
      // Our view may now disagree with the disk: rebuild from scratch next time.
      this.states.delete(identityId);
      for (const p of batch) p.reject(err);
      return;
    }
    outcomes.forEach((o, i) => {
      const p = batch[i]!;
      if (o.ok) p.resolve({ value: o.value, entry: o.entry });
      else p.reject(o.err);
    });
  }

  /** The entry for `draft` at the chain's end, hashed and signed, and its canonical line. */
  private async seal(state: ChainState, identityId: string, draft: Draft, keyId?: string, cosign?: Uint8Array): Promise<{ entry: AuditEntry; line: string }> {
    const signerId = keyId ?? state.activeKeyId;
    if (!signerId) throw new ChainCorruptError(`audit log of ${identityId} has no active key`);
    const key = await this.opts.keyring.signer(identityId, signerId);
    const body: Record<string, unknown> = {
      v: ENTRY_VERSION,
      seq: state.seq + 1,
      ts: new Date(this.now()).toISOString(),
      identity: identityId,
      ...draft,
      keyId: signerId,
      prev: state.head,
    };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    const forms = sealingForms(body);
    const hash = bodyHash(forms.body);
    const statement = signingStatement(hash);
    const entry = { ...body, hash, sig: b64(edSign(key.secretKey, statement)) } as AuditEntry;
    if (cosign) entry.sigNew = b64(edSign(cosign, statement));
    return { entry, line: forms.line(entry) };
  }
}

export function parseLine(line: string, identityId?: string): AuditEntry {
  let e: AuditEntry;
  try {
    e = JSON.parse(line) as AuditEntry;
  } catch {
    throw new ChainCorruptError(`audit log${identityId ? ` of ${identityId}` : ""} has a line that is not JSON`);
  }
  if (typeof e !== "object" || e === null || typeof e.seq !== "number" || typeof e.hash !== "string") {
    throw new ChainCorruptError(`audit log${identityId ? ` of ${identityId}` : ""} has a malformed entry`);
  }
  return e;
}

