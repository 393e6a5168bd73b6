/**
 * `sigil receipt explain`: the questions one receipt answers — which agent acted, for which tenant,
 * who approved it and how, under which policy (version and hash), with which key, and whether the
 * tenant's key delegated that key — each answer checked against the identity's log (verified as a
 * whole: hash chain and signatures), its keys and its tenant's delegation statements, and each
 * marked `ok`, `failed` (what the receipt or the log claims does not hold) or `unchecked` (with why:
 * nothing to check it against). The receipt is taken exactly as the agent got it
 * (`structuredContent.receipt`).
 */
import { type AuditEntry } from "../audit/entry.js";
import type { Receipt } from "../audit/chain.js";
import type { PublicKeyInfo } from "../audit/verify.js";
import { verifyChain } from "../audit/verify.js";
import { SigilError } from "../errors.js";
import type { DelegationRecord } from "../../store/types.js";
import { delegationAt, verifyDelegation } from "./delegation.js";
import { keysFromJwks } from "./directory.js";
import { type TenantRoster, checkApprovalEvidence, checkPasskeyAssertions } from "../approval/evidence.js";
import { ChainState, parseLine } from "../audit/chain.js";

export type Question = "receipt" | "agent" | "tenant" | "approval" | "policy" | "key" | "delegation";
export type Status = "ok" | "failed" | "unchecked";

export interface Answer {
  question: Question;
  status: Status;
  /** The answer (what the entry says), when there is one. */
  answer?: string;
  /** How it was checked, what failed, or why it could not be checked. */
  detail: string;
}

export interface Explanation {
  /** No answer failed. (Unchecked answers are listed with their reason.) */
  ok: boolean;
  identityId: string;
  seq: number;
  answers: Answer[];
}

/** A receipt as the agent got it (`structuredContent.receipt`): the shape the audit chain makes. */
export type ReceiptFields = Receipt;

/** The receipt from what the file holds: the receipt itself, `{receipt}` or `{structuredContent: {receipt}}`. */
export function receiptFrom(doc: unknown): ReceiptFields {
  let r = doc as Record<string, unknown> | undefined;
  if (r && typeof r === "object" && r.structuredContent && typeof r.structuredContent === "object") r = r.structuredContent as Record<string, unknown>;
  if (r && typeof r === "object" && r.receipt && typeof r.receipt === "object") r = r.receipt as Record<string, unknown>;
  const ok =
    r &&
    typeof r === "object" &&
    typeof r.identityId === "string" &&
    Number.isSafeInteger(r.seq) &&
    (r.seq as number) >= 1 &&
    typeof r.hash === "string" &&
    typeof r.keyId === "string" &&
    typeof r.signature === "string" &&
    (r.tenantId === undefined || typeof r.tenantId === "string") &&
    (r.policyVersion === undefined || Number.isSafeInteger(r.policyVersion)) &&
    (r.policyHash === undefined || typeof r.policyHash === "string") &&
    (r.approvalId === undefined || typeof r.approvalId === "string");
  if (!ok) throw new SigilError("invalid_arguments", "The file does not hold a receipt (structuredContent.receipt of a sigil tool result: identityId, seq, hash, keyId, signature).");
  return r as unknown as ReceiptFields;
}

export interface ExplainSources {
  identity: { id: string; name?: string };
  /** The identity's whole log, in order. */
  lines: AsyncIterable<string> | Iterable<string | AuditEntry>;
  keys: PublicKeyInfo[];
  /** Where the keys came from, and whether that anchors them (the home's registry, or keys the verifier chose). */
  keysFrom: string;
  keysAnchored: boolean;
  /** The tenant's delegation statements and public key(s) as a JWKS, when there are any. */
  delegation?: { tenant: { id: string; keys: unknown[] }; delegations: unknown[] };
  delegationFrom: string;
  /** The channel a tool belongs to (null: every identity has it), to check the statement delegates it. */
  channelOf?: (tool: string) => string | readonly string[] | null | undefined;
  /** Approvers' public keys by approver id from a source the verifier trusts, to anchor approval signatures. */
  approverKeys?: ReadonlyMap<string, string>;
  /**
   * The tenant's own log (src/tenant/log.ts) and the tenant key(s) it is verified with: who its
   * approvers were, when, with which keys and passkeys. It anchors approvers' signatures and passkeys.
   */
  tenantLog?: { tenantId: string; lines: AsyncIterable<string> | Iterable<string | AuditEntry>; keys: PublicKeyInfo[]; from: string };
}

/** The tenant's log verified and replayed into its roster; why it cannot be used; or undefined when it has no entries. */
async function tenantRoster(log: NonNullable<ExplainSources["tenantLog"]>): Promise<TenantRoster | string | undefined> {
  const raw: Array<string | AuditEntry> = [];
  for await (const l of log.lines as AsyncIterable<string | AuditEntry>) raw.push(l);
  if (raw.length === 0) return undefined;
  const v = await verifyChain(log.tenantId, raw, log.keys);
  if (!v.ok) return `tenant ${log.tenantId}'s log (${log.from}) does not verify: seq ${v.firstBadSeq}: ${v.error ?? ""}`;
  const state = new ChainState(log.tenantId);
  for (const l of raw) state.apply(typeof l === "string" ? parseLine(l, log.tenantId) : l);
  return Object.assign(state, { tenantId: log.tenantId });
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export async function explainReceipt(receipt: ReceiptFields, src: ExplainSources): Promise<Explanation> {
  const answers: Answer[] = [];
  const add = (question: Question, status: Status, detail: string, answer?: string): void => {
    answers.push({ question, status, ...(answer !== undefined ? { answer } : {}), detail });
  };
  const done = (): Explanation => ({ ok: answers.every((a) => a.status !== "failed"), identityId: receipt.identityId, seq: receipt.seq, answers });

  if (src.identity.id !== receipt.identityId) {
    add("receipt", "failed", `the log given is ${src.identity.id}'s, not ${receipt.identityId}'s`);
    return done();
  }
  // The whole log, so the entry is known to sit in an intact chain; and the entries we need.
  const entries = new Map<number, AuditEntry>();
  const collected: Array<string | AuditEntry> = [];
  for await (const raw of src.lines as AsyncIterable<string | AuditEntry>) {
    collected.push(raw);
    try {
      const e = (typeof raw === "string" ? JSON.parse(raw) : raw) as AuditEntry;
      if (e && typeof e === "object" && Number.isSafeInteger(e.seq) && !entries.has(e.seq)) entries.set(e.seq, e);
    } catch {
      /* the chain verification below reports it */
    }
  }
  const chain = await verifyChain(receipt.identityId, collected, src.keys);
  const entry = entries.get(receipt.seq);
  if (!chain.ok && chain.firstBadSeq !== undefined && chain.firstBadSeq <= receipt.seq) {
    add("receipt", "failed", `the log does not verify up to this entry: seq ${chain.firstBadSeq}: ${chain.error ?? ""}`);
    return done();
  }
  if (!entry) {
    add("receipt", "failed", `the log has ${chain.entries} entries; there is no entry ${receipt.seq}`);
    return done();
  }
  const mismatch = (["hash", "keyId", "signature"] as const).filter((k) => (k === "signature" ? entry.sig : entry[k]) !== receipt[k]);
  if (mismatch.length > 0) {
    add("receipt", "failed", `the receipt's ${mismatch.join(", ")} ${mismatch.length > 1 ? "are" : "is"} not that of entry ${receipt.seq} in the log (the receipt was altered, or is of another log)`);
    return done();
  }
  const anchoredNote = src.keysAnchored ? `keys from ${src.keysFrom}` : `keys from ${src.keysFrom}, which nothing anchors (give --keys with the identity's published keys)`;
  add(
    "receipt",
    src.keysAnchored ? "ok" : "unchecked",
    `entry ${receipt.seq} (${entry.tool} ${entry.decision} at ${entry.ts}) is in the log, whose ${chain.entries} entries verify (hash chain and signatures; ${anchoredNote})${chain.ok ? "" : `; later entries do not: seq ${chain.firstBadSeq}: ${chain.error ?? ""}`}`,
  );

  // The intent an entry answers (for an acting tool the receipt is its result entry).
  const intent = typeof entry.intent === "number" ? entries.get(entry.intent) : undefined;
  const field = (k: string): unknown => (entry[k] !== undefined ? entry[k] : intent?.[k]);

  // Agent.
  add("agent", src.keysAnchored ? "ok" : "unchecked", `the entry names it and is signed by its key${src.keysAnchored ? "" : " (not anchored)"}`, `${entry.identity}${src.identity.name !== undefined ? ` (${src.identity.name})` : ""}`);

  // Key.
  const key = src.keys.find((k) => k.keyId === entry.keyId);
  add(
    "key",
    !key ? "failed" : src.keysAnchored ? "ok" : "unchecked",
    !key ? `key ${entry.keyId} is not among the identity's keys (${src.keysFrom})` : `the entry's signature verifies with it, valid from ${key.notBefore ?? "the start"}${key.notAfter ? ` to ${key.notAfter}` : ""} (${anchoredNote})`,
    entry.keyId,
  );

  // Tenant.
  const tenant = str(field("tenant"));
  if (receipt.tenantId !== undefined && receipt.tenantId !== tenant) {
    add("tenant", "failed", `the receipt says ${receipt.tenantId}, the signed entry says ${tenant ?? "nothing"}`, tenant);
  } else if (tenant === undefined) {
    add("tenant", "unchecked", "the entry names no tenant (written before sigil recorded tenants)");
  } else {
    add("tenant", "ok", "named in the signed entry (and by the receipt)", tenant);
  }

  // Policy: what the entry says, and that the log's own policy history agrees.
  const version = field("policyVersion");
  const hash = str(field("policyHash"));
  const claims: string[] = [];
  if (receipt.policyVersion !== undefined && receipt.policyVersion !== version) claims.push(`the receipt says version ${receipt.policyVersion}, the signed entry ${String(version)}`);
  if (receipt.policyHash !== undefined && receipt.policyHash !== hash) claims.push(`the receipt says hash ${receipt.policyHash}, the signed entry ${String(hash)}`);
  let inForce: { version: unknown; hash: unknown; seq: number } | undefined;
  for (let s = 1; s <= receipt.seq; s++) {
    const e = entries.get(s);
    if (e && (e.tool === "identity_created" || e.tool === "policy_updated") && e.policyVersion !== undefined) inForce = { version: e.policyVersion, hash: e.policyHash, seq: s };
  }
  if (typeof version !== "number") {
    add("policy", claims.length ? "failed" : "unchecked", claims.length ? claims.join("; ") : "the entry records no policy version");
  } else if (claims.length > 0) {
    add("policy", "failed", claims.join("; "), `version ${version}`);
  } else if (hash === undefined) {
    add("policy", "unchecked", "the entry records the version but not the policy's hash (written before sigil recorded it)", `version ${version}`);
  } else if (inForce && inForce.version === version && inForce.hash !== hash) {
    add("policy", "failed", `the log's policy version ${version} (entry ${inForce.seq}) has hash ${String(inForce.hash)}, not ${hash}`, `version ${version}, hash ${hash}`);
  } else if (inForce && inForce.version === version) {
    add("policy", "ok", `the policy in force (set by entry ${inForce.seq}) has this version and hash`, `version ${version}, hash ${hash}`);
  } else {
    add("policy", "unchecked", `the log does not say which policy version ${version} was (the last policy entry before it is ${inForce ? `version ${String(inForce.version)}` : "missing"})`, `version ${version}, hash ${hash}`);
  }

  // Delegation: the tenant's statement for this key, in force at the entry's time.
  explainDelegation(add, src, entry, tenant, hash, intent);

  // Approval.
  const approvalId = str(field("approvalId")) ?? receipt.approvalId;
  const approval = str(field("approval"));
  if (approvalId !== undefined) {
    // The approval_requested and approval_decided entries before the entry that used it, each
    // approver's signature over its decision statement (src/approval/evidence.ts).
    const usedAt = intent?.approvalId === approvalId ? intent.seq : entry.seq;
    if (receipt.approvalId !== undefined && receipt.approvalId !== approvalId) {
      add("approval", "failed", `the receipt names approval ${receipt.approvalId} but its entry names ${approvalId}`, `approval ${approvalId}`);
    } else {
      const roster = src.tenantLog ? await tenantRoster(src.tenantLog) : undefined;
      const all = [...entries.values()];
      const ev = checkApprovalEvidence(all, approvalId, usedAt, src.approverKeys, typeof roster === "string" ? undefined : roster);
      const pk = ev.ok && ev.approvers.some((a) => a.via === "passkey") ? await checkPasskeyAssertions(all, ev, typeof roster === "string" ? undefined : roster) : undefined;
      const anchored = ev.approvers.every((a) => a.anchored) && (pk?.anchored ?? true);
      // A tenant log that does not verify anchors nothing and is itself a failure (forged, truncated).
      const ok = ev.ok && (pk?.ok ?? true) && !(typeof roster === "string" && ev.via === "approver");
      const status: Status = !ok ? "failed" : ev.via === "approver" && !anchored ? "unchecked" : "ok";
      const requested = all.find((e) => e.tool === "approval_requested" && e.approvalId === approvalId);
      const approvedFor = str(requested?.tenantId);
      const who = ev.approvers.map((a) => (a.via === "passkey" ? `${a.approverId} via passkey ${String(a.credentialId).slice(0, 22)}… (its assertion over the decision statement)` : `${a.approverId} (approver, signed)`)).join(", ");
      const answer = `${approvalId}${approvedFor ? ` for tenant ${approvedFor}` : ""}: ${ev.via === "approver" ? who : ev.via ?? "not approved"}`;
      const details = [ev.detail, ...(pk ? [pk.detail] : []), ...(typeof roster === "string" ? [roster] : !roster && ev.via === "approver" ? ["no tenant log to check the approvers against"] : [])];
      add("approval", status, ok ? details.join("; ") : !ev.ok ? ev.detail : pk && !pk.ok ? pk.detail : String(roster), answer);
    }
  } else if (approval === "accepted") {
    add("approval", "ok", "client-attested: the connected MCP client accepted an approval form (no named approver; it proves no human)", `client-attested${tenant ? ` for tenant ${tenant}` : ""}`);
  } else {
    add("approval", "ok", "no approval applied: the policy did not ask for one", "none");
  }
  return done();
}

function explainDelegation(add: (q: Question, s: Status, d: string, a?: string) => void, src: ExplainSources, entry: AuditEntry, tenant: string | undefined, hash: string | undefined, intent?: AuditEntry): void {
  const doc = src.delegation;
  if (!doc || !Array.isArray(doc.delegations) || doc.delegations.length === 0) {
    add("delegation", "unchecked", `no delegation statements (${src.delegationFrom})`);
    return;
  }
  let tenantKeys: ReturnType<typeof keysFromJwks>;
  try {
    tenantKeys = keysFromJwks({ keys: doc.tenant?.keys });
  } catch {
    add("delegation", "failed", `the tenant's key cannot be read (${src.delegationFrom})`);
    return;
  }
  const st = delegationAt(doc.delegations as DelegationRecord[], entry.keyId, entry.ts);
  if (!st) {
    add("delegation", "failed", `no statement of the tenant delegates key ${entry.keyId} at ${entry.ts} (${src.delegationFrom})`);
    return;
  }
  const tk = tenantKeys.find((k) => k.kid === st.tenantKeyId);
  const problems: string[] = [];
  if (!tk || !verifyDelegation(st, tk.publicKey)) problems.push(`its signature does not verify with the tenant key ${st.tenantKeyId}`);
  if (st.identity !== entry.identity) problems.push(`it is for ${st.identity}`);
  if (doc.tenant?.id !== st.tenant) problems.push(`it is by ${st.tenant}, not the tenant whose key was given (${String(doc.tenant?.id)})`);
  if (tenant !== undefined && st.tenant !== tenant) problems.push(`it is by tenant ${st.tenant}, the entry names ${tenant}`);
  if (hash !== undefined && st.policyHash !== hash) problems.push(`it vouches for policy hash ${st.policyHash}, the entry was made under ${hash}`);
  const channel = src.channelOf?.(entry.tool);
  if (typeof channel === "string" && !st.channels.includes(channel)) problems.push(`it does not delegate the ${channel} channel, which ${entry.tool} uses`);
  if (Array.isArray(channel)) {
    // A tool of several channels: the one the entry names (list_messages' `channel` argument,
    // read_message's message), else any of them (the tool is listed to an identity with one).
    const named = [entry.args, intent?.args, entry.result].map((x) => (x as { channel?: unknown } | undefined)?.channel).find((c): c is string => typeof c === "string" && channel.includes(c));
    const needed: readonly string[] = named !== undefined ? [named] : channel;
    if (!needed.some((c) => st.channels.includes(c))) problems.push(`it delegates none of the channels ${entry.tool} uses (${needed.join(" or ")})`);
  }
  const answer = `tenant ${st.tenant} (key ${st.tenantKeyId}) delegates key ${st.keyId}, channels ${st.channels.join(",") || "none"}, from ${st.notBefore}${st.notAfter ? ` to ${st.notAfter}` : ""}`;
  add("delegation", problems.length ? "failed" : "ok", problems.length ? problems.join("; ") : `the statement in force at the entry's time verifies with the tenant's key (${src.delegationFrom})`, answer);
}
