/**
 * Checking an approval from an identity's log alone (for `sigil receipt explain`; README:
 * "Approvals"): the `approval_requested` entry, the `approval_decided` entries after it, and the
 * entry that used the approval. Each approver decision must carry a statement that describes this
 * approval exactly (identity, tenant, tool, action hash, policy version, expiry) and an Ed25519
 * signature by the approver's key over it. What anchors the approvers' keys:
 *
 * - `roster`: the approval's tenant's own log (src/tenant/log.ts), verified by the caller under
 *   the tenant's key. Each approver must be on it — added before the decision, not removed by then
 *   — with the key that signed; its key is then anchored. An approver the tenant's log does not
 *   show current at the decision fails the check.
 * - `keys` (approver id → public key) from another source the verifier trusts.
 *
 * Without either, a signature proves consistency with the key the entry names, not whose key that
 * is. A decision made with a passkey (`via: "passkey"`) also carries the WebAuthn assertion; that
 * is checked by `checkPasskeyAssertions` (below), against the credential the tenant's log
 * registered when there is one.
 */
import type { AuditEntry } from "../audit/entry.js";
import type { ChainState } from "../audit/chain.js";
import { type DecisionStatement, type PasskeyAssertion, passkeyChallenge, verifyDecision } from "./approvals.js";

/** A tenant's log as a verifier replayed it: its id and roster. */
export type TenantRoster = { tenantId: string } & Pick<ChainState, "approver" | "passkey">;

export interface ApprovalEvidence {
  ok: boolean;
  /** One sentence: what was checked, or what failed. */
  detail: string;
  approvalId: string;
  /** How it was approved: by named approvers, or client-attested. */
  via?: "approver" | "client-attested";
  approvers: Array<{ approverId: string; tenantId: string; keyId: string; anchored: boolean; via: "approver" | "passkey"; credentialId?: string; seq: number }>;
}

export function checkApprovalEvidence(entries: readonly AuditEntry[], approvalId: string, usedAtSeq: number, keys?: ReadonlyMap<string, string>, roster?: TenantRoster): ApprovalEvidence {
  const fail = (detail: string): ApprovalEvidence => ({ ok: false, detail, approvalId, approvers: [] });
  const req = entries.find((e) => e.tool === "approval_requested" && e.approvalId === approvalId);
  if (!req) return fail(`the log holds no approval_requested entry for ${approvalId}`);
  if (req.seq >= usedAtSeq) return fail(`approval ${approvalId} was requested after the entry that used it`);
  const r = req as Record<string, unknown>;
  const decisions = entries.filter((e) => e.tool === "approval_decided" && e.approvalId === approvalId && e.seq > req.seq && e.seq < usedAtSeq);
  if (decisions.length === 0) return fail(`the log holds no decision on ${approvalId} before it was used`);
  if (decisions.some((d) => d.decision !== "approved")) return fail(`approval ${approvalId} was denied before it was used`);
  const client = decisions.find((d) => d.via === "client-attested");
  if (client) {
    return { ok: true, detail: "client-attested: the connected MCP client's form answer approved it (no named approver; it proves no human)", approvalId, via: "client-attested", approvers: [] };
  }
  const approvers: ApprovalEvidence["approvers"] = [];
  for (const d of decisions) {
    const s = d.statement as DecisionStatement | undefined;
    const expected: DecisionStatement = {
      approvalId,
      identityId: req.identity,
      tenantId: String(r.tenantId),
      tool: String(r.forTool),
      actionHash: String(r.actionHash),
      policyVersion: Number(r.policyVersion),
      expiresAt: String(r.expiresAt),
      approverId: String(d.approverId),
      decision: "approve",
    };
    if (!s || typeof s !== "object" || JSON.stringify(Object.entries(s).sort()) !== JSON.stringify(Object.entries(expected).sort())) {
      return fail(`the decision at seq ${d.seq} does not describe approval ${approvalId} as requested`);
    }
    let anchoredKey = keys?.get(expected.approverId);
    if (roster && roster.tenantId === expected.tenantId) {
      const on = roster.approver(expected.approverId);
      const at = Date.parse(String(d.ts));
      if (!on) return fail(`approver ${expected.approverId} (seq ${d.seq}) is not in tenant ${expected.tenantId}'s log: no entry ever added it`);
      if (Date.parse(on.from) > at) return fail(`approver ${expected.approverId} decided at ${String(d.ts)} (seq ${d.seq}), before tenant ${expected.tenantId}'s log added it (${on.from})`);
      if (on.removedAt !== undefined && Date.parse(on.removedAt) <= at) return fail(`approver ${expected.approverId} decided at ${String(d.ts)} (seq ${d.seq}), after tenant ${expected.tenantId}'s log removed it (${on.removedAt})`);
      anchoredKey = on.publicKey;
    }
    const publicKey = anchoredKey ?? (typeof d.approverPublicKey === "string" ? d.approverPublicKey : "");
    if (!verifyDecision(s, publicKey, String(d.approverSignature))) {
      return fail(`approver ${expected.approverId}'s signature on approval ${approvalId} (seq ${d.seq}) does not verify${anchoredKey ? " under its published key" : ""}`);
    }
    if (d.tenantId !== r.tenantId) return fail(`the decision at seq ${d.seq} names another tenant than the approval`);
    const passkey = d.via === "passkey" ? (d.passkey as PasskeyAssertion | undefined) : undefined;
    if (d.via === "passkey" && (!passkey || typeof passkey.credentialId !== "string")) return fail(`the decision at seq ${d.seq} says it was made with a passkey but carries no assertion`);
    approvers.push({
      approverId: expected.approverId,
      tenantId: expected.tenantId,
      keyId: String(d.approverKeyId),
      anchored: anchoredKey !== undefined,
      via: passkey ? "passkey" : "approver",
      ...(passkey ? { credentialId: passkey.credentialId } : {}),
      seq: d.seq,
    });
  }
  const quorum = typeof r.quorum === "number" ? r.quorum : 1;
  if (new Set(approvers.map((a) => a.approverId)).size < quorum) return fail(`approval ${approvalId} needed ${quorum} distinct approvers`);
  const names = approvers.map((a) => `${a.approverId}${a.via === "passkey" ? " with a passkey" : ""}${a.anchored ? "" : " (key as the entry names it, not anchored)"}`).join(", ");
  const from = roster && roster.tenantId === String(r.tenantId) ? `, each on tenant ${String(r.tenantId)}'s log at the time` : "";
  return { ok: true, detail: `approved by ${names} of tenant ${String(r.tenantId)}, each signature verified${from}`, approvalId, via: "approver", approvers };
}

/**
 * The WebAuthn assertions of the passkey decisions in `ev` (by @simplewebauthn/server, as the
 * console verified them): each answers the challenge that is the hash of its decision statement
 * (so it approves that exact action and nothing else), is of type `webauthn.get`, and is signed
 * by the credential — the one the tenant's log registered for that approver (anchored, with the
 * origin and RP ID registered), or else only the public key the entry itself carries (not
 * anchored). `ok` false with why when one does not.
 */
export async function checkPasskeyAssertions(entries: readonly AuditEntry[], ev: ApprovalEvidence, roster?: TenantRoster): Promise<{ ok: boolean; detail: string; anchored: boolean }> {
  const { verifyAuthenticationResponse } = await import("@simplewebauthn/server");
  let anchored = true;
  for (const a of ev.approvers.filter((x) => x.via === "passkey")) {
    const d = entries.find((e) => e.seq === a.seq)!;
    const p = d.passkey as PasskeyAssertion;
    const statement = d.statement as DecisionStatement;
    const challenge = passkeyChallenge(statement);
    const registered = roster && roster.tenantId === a.tenantId ? roster.passkey(p.credentialId) : undefined;
    if (roster && roster.tenantId === a.tenantId && (!registered || registered.approverId !== a.approverId)) {
      return { ok: false, anchored: false, detail: `the passkey ${p.credentialId.slice(0, 22)}… that approved at seq ${d.seq} is not one tenant ${a.tenantId}'s log registered for ${a.approverId}` };
    }
    if (!registered) anchored = false;
    let clientData: { origin?: unknown } = {};
    try {
      clientData = JSON.parse(Buffer.from(String(p.clientDataJSON), "base64url").toString("utf8")) as { origin?: unknown };
    } catch {
      return { ok: false, anchored: false, detail: `the passkey assertion at seq ${d.seq} has unreadable client data` };
    }
    const origin = registered?.origin ?? (typeof clientData.origin === "string" ? clientData.origin : "");
    let rpId = registered?.rpId;
    try {
      rpId ??= new URL(origin).hostname;
    } catch {
      return { ok: false, anchored: false, detail: `the passkey assertion at seq ${d.seq} names no origin` };
    }
    let verified = false;
    try {
      const v = await verifyAuthenticationResponse({
        response: { id: p.credentialId, rawId: p.credentialId, type: "public-key", clientExtensionResults: {}, response: { authenticatorData: p.authenticatorData, clientDataJSON: p.clientDataJSON, signature: p.signature } },
        expectedChallenge: challenge,
        expectedOrigin: origin,
        expectedRPID: rpId,
        expectedType: "webauthn.get",
        credential: { id: p.credentialId, publicKey: Buffer.from(registered?.publicKey ?? p.publicKey, "base64url"), counter: 0 },
        requireUserVerification: false,
      });
      verified = v.verified;
    } catch {
      verified = false;
    }
    if (!verified) {
      return { ok: false, anchored: false, detail: `the passkey assertion at seq ${d.seq} does not verify: it is not ${registered ? "the registered credential's" : "its credential's"} signature over this approval's challenge (the hash of its decision statement)` };
    }
  }
  return { ok: true, anchored, detail: anchored ? "each passkey assertion verifies with the credential the tenant's log registered, over the hash of its decision statement" : "each passkey assertion verifies over the hash of its decision statement, with the public key the entry carries (not anchored: no tenant log)" };
}
