/**
 * Approvals (README: "Approvals"; docs/ARCHITECTURE.md, "Approvals"): an action that policy says
 * needs a human's approval gets a durable pending approval, bound to the exact action (the hash of
 * its normalised arguments) and the policy version it was asked under.
 *
 * The identity's audit log is the authority. The request is an `approval_requested` entry; every
 * decision is an `approval_decided` entry (approver id, tenant id, how, and the approver's Ed25519
 * signature over the decision statement); the action's intent entry carrying `approvalId` uses it
 * (once); a refusal with reason `approval_timeout` closes it. Each of these is written inside the
 * identity's exclusive chain section after checking the approval's state as the log stands
 * (`ChainState.approval`), so two approvers deciding at once, a decision racing the timeout, or
 * instances sharing one PostgreSQL store all get exactly one outcome. The store keeps the request
 * (what approvers list and look up) and never its status.
 */
import { createHash } from "node:crypto";
import { verifySignature } from "../crypto/ed25519.js";
import { fromB64 } from "../crypto/encoding.js";
import { Denied } from "../errors.js";
import type { ApprovalState, AuditChains, Draft } from "../audit/chain.js";
import { APPROVAL_DECISION } from "../provenance/domains.js";
import { DEFAULT_APPROVAL_TIMEOUT_S, type Policy } from "../policy/schema.js";
import { jcs } from "../util/jcs.js";
import { APPROVAL_ID_RE, type ApprovalRecord, type ApproverRecord, type Store } from "../../store/types.js";
import type { Approvers } from "./approvers.js";

/** How long an approval, once decided, stays usable after its decision deadline (`expiresAt`). */
export const APPROVAL_USE_WINDOW_MS = 10 * 60_000;
/** The decision deadline of a client-only approval asked through `approvalAboveCents` alone. */
export const CLIENT_APPROVAL_VALID_MS = 10 * 60_000;

export type ApprovalVia = "approver" | "client";

export interface ApprovalSettings {
  via: ApprovalVia[];
  approvers: string[];
  quorum: number;
  requirePasskey: boolean;
  /** How long the action waits for a decision. */
  timeoutMs: number;
}

/**
 * Who answers and how long the action waits, from the policy: its `approval` block when it has one
 * (default via `["approver"]`, quorum 1, 300 s); otherwise `approvalAboveCents` alone keeps the
 * original behaviour — the connected client is asked (form elicitation).
 */
export function approvalSettings(policy: Policy): ApprovalSettings {
  const a = policy.approval;
  if (!a) return { via: ["client"], approvers: [], quorum: 1, requirePasskey: false, timeoutMs: CLIENT_APPROVAL_VALID_MS };
  return {
    via: a.via ?? ["approver"],
    approvers: a.approvers ?? [],
    quorum: a.quorum ?? 1,
    requirePasskey: a.requirePasskey === true,
    timeoutMs: (a.timeoutSeconds ?? DEFAULT_APPROVAL_TIMEOUT_S) * 1000,
  };
}

/** The statement an approver signs: one decision on one approval of one exact action. */
export interface DecisionStatement {
  approvalId: string;
  identityId: string;
  tenantId: string;
  tool: string;
  actionHash: string;
  policyVersion: number;
  expiresAt: string;
  approverId: string;
  decision: "approve" | "deny";
}

/** The bytes an approver's key signs: a fixed prefix, then the RFC 8785 canonical statement. */
export function decisionBytes(s: DecisionStatement): string {
  return APPROVAL_DECISION + jcs(s);
}

/**
 * The WebAuthn challenge for approving with a passkey: SHA-256 of the decision statement's bytes,
 * so the authenticator's assertion (whose clientDataJSON carries the challenge) itself says which
 * approver approved which exact action.
 */
export function passkeyChallenge(s: DecisionStatement): string {
  return createHash("sha256").update(decisionBytes(s)).digest("base64url");
}

/** A verified WebAuthn assertion (src/approval/passkeys.ts), as an `approval_decided` entry records it. */
export interface PasskeyAssertion {
  credentialId: string;
  /** The credential's COSE public key (base64url), as registered. */
  publicKey: string;
  authenticatorData: string;
  clientDataJSON: string;
  signature: string;
  /** The challenge the assertion answered (base64url): `passkeyChallenge` of the statement. */
  challenge: string;
}

/** Whether `signature` (base64) is `publicKey`'s (base64) Ed25519 signature of the statement. */
export function verifyDecision(s: DecisionStatement, publicKey: string, signature: string): boolean {
  try {
    return verifySignature(new Uint8Array(fromB64(publicKey)), decisionBytes(s), new Uint8Array(fromB64(signature)));
  } catch {
    return false;
  }
}

/** An approval as `sigil approvals list --json` and `list_approvals` show it. */
export interface ApprovalView {
  id: string;
  identityId: string;
  tenantId: string;
  tool: string;
  action: Record<string, unknown>;
  status: ApprovalState["status"];
  requestedAt: string;
  expiresAt: string;
  approvers: string[];
  quorum: number;
  decidedBy?: Array<{ approverId?: string; decision: "approve" | "deny"; via: string; at: string }>;
}

export const APPROVAL_STATUSES = ["pending", "approved", "denied", "expired", "used"] as const;

/** Whether `approver` may see and decide this approval: its tenant's, and named by it or naming no one. */
function visibleTo(a: { tenantId: string; approvers: string[] }, approver: ApproverRecord): boolean {
  return a.tenantId === approver.tenantId && (a.approvers.length === 0 || a.approvers.includes(approver.id));
}

export class Approvals {
  constructor(
    private readonly store: Pick<Store, "getApproval" | "listApprovals" | "createApproval">,
    private readonly chains: Pick<AuditChains, "commit" | "state">,
    private readonly approvers: Pick<Approvers, "sign" | "stillValid">,
    private readonly now: () => number,
  ) {}

  /** Stores the request (before its `approval_requested` entry is written: an entry never names a request nobody can find). */
  record(r: ApprovalRecord): Promise<void> {
    return this.store.createApproval(r);
  }

  /** The `approval_requested` entry for a request. */
  static requestDraft(r: ApprovalRecord, session: string, requirePasskey: boolean, idempotencyKey: string | undefined): Draft {
    return {
      tool: "approval_requested",
      session,
      phase: "event",
      decision: "pending",
      approvalId: r.id,
      forTool: r.tool,
      args: r.action,
      actionHash: r.actionHash,
      policyVersion: r.policyVersion,
      tenantId: r.tenantId,
      approvers: r.approvers,
      quorum: r.quorum,
      via: r.via,
      ...(requirePasskey ? { requirePasskey: true } : {}),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      expiresAt: r.expiresAt,
    };
  }

  private async visible(id: string, approver: ApproverRecord): Promise<ApprovalRecord> {
    const rec = typeof id === "string" && APPROVAL_ID_RE.test(id) ? await this.store.getApproval(id) : undefined;
    if (!rec || !visibleTo(rec, approver)) throw new Denied("not_found", `No approval ${typeof id === "string" ? id.slice(0, 40) : ""}.`);
    return rec;
  }

  /**
   * An approver's decision: signed with the approver's key, then recorded in the identity's log
   * if — as the log stands, inside its exclusive section — the approval is still pending, not past
   * its deadline, names this approver (or no one) and this approver has not decided it yet.
   */
  async decide(
    approver: ApproverRecord,
    approvalId: string,
    decision: "approve" | "deny",
    reason?: string,
    /** An approval made with a passkey (the console): the verified assertion over `passkeyChallenge(statement)`. */
    passkey?: PasskeyAssertion,
  ): Promise<{ approvalId: string; decision: "approve" | "deny"; status: ApprovalState["status"] }> {
    if (reason !== undefined && (typeof reason !== "string" || reason.length > 500 || /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(reason))) {
      throw new Denied("invalid_arguments", "reason must be at most 500 characters without control characters.");
    }
    const { rec, current, statement } = await this.statementFor(approver, approvalId, decision);
    if (passkey && (decision !== "approve" || passkey.challenge !== passkeyChallenge(statement))) {
      throw new Denied("passkey_invalid", `the passkey assertion does not answer approval ${rec.id}'s challenge; nothing was recorded.`);
    }
    const signed = await this.approvers.sign(current, decisionBytes(statement));
    const { value } = await this.chains.commit(rec.identityId, (state) => {
      const now = this.now();
      const a = state.approval(rec.id, now);
      if (!a || !visibleTo(a, current)) throw new Denied("not_found", `No approval ${rec.id}.`);
      // The signed statement must describe the approval the log holds.
      if (a.actionHash !== rec.actionHash || a.policyVersion !== rec.policyVersion || a.tool !== rec.tool) throw new Denied("not_found", `No approval ${rec.id}.`);
      if (a.status !== "pending") throw new Denied("approval_closed", `approval ${rec.id} is already ${a.status}; nothing was recorded.`);
      if (a.decisions.some((d) => d.approverId === current.id)) throw new Denied("already_decided", `this approver already decided approval ${rec.id}; a quorum counts each approver once.`);
      if (decision === "approve" && a.requirePasskey && !passkey) {
        throw new Denied("passkey_required", `approval ${rec.id} must be approved with a passkey (policy approval.requirePasskey), which only the console can give.`);
      }
      const draft: Draft = {
        tool: "approval_decided",
        session: "approver",
        phase: "event",
        decision: decision === "approve" ? "approved" : "denied",
        approvalId: rec.id,
        approverId: current.id,
        tenantId: current.tenantId,
        via: passkey ? "passkey" : "approver",
        ...(reason !== undefined && reason !== "" ? { comment: reason } : {}),
        statement,
        approverKeyId: signed.keyId,
        approverPublicKey: signed.publicKey,
        approverSignature: signed.signature,
        ...(passkey ? { passkey: { ...passkey } } : {}),
      };
      const approves = a.decisions.filter((d) => d.decision === "approve" && d.approverId !== undefined).length + (decision === "approve" ? 1 : 0);
      const status: ApprovalState["status"] = decision === "deny" ? "denied" : approves >= a.quorum ? "approved" : "pending";
      return { value: status, draft };
    });
    return { approvalId: rec.id, decision, status: value };
  }

  /** The statement an approver would sign deciding this approval (refused as `decide` refuses: not visible, approver no longer valid). */
  async statementFor(approver: ApproverRecord, approvalId: string, decision: "approve" | "deny"): Promise<{ rec: ApprovalRecord; current: ApproverRecord; statement: DecisionStatement }> {
    const rec = await this.visible(approvalId, approver);
    // The approver as it stands now (removed meanwhile: its token no longer decides anything).
    const current = await this.approvers.stillValid(approver.id, approver.tokenHash);
    if (!current) throw new Denied("unauthenticated", "this approver token is no longer valid.");
    const statement: DecisionStatement = {
      approvalId: rec.id,
      identityId: rec.identityId,
      tenantId: rec.tenantId,
      tool: rec.tool,
      actionHash: rec.actionHash,
      policyVersion: rec.policyVersion,
      expiresAt: rec.expiresAt,
      approverId: current.id,
      decision,
    };
    return { rec, current, statement };
  }

  /** The connected client's answer to a form elicitation (`client-attested`), recorded only while pending. */
  async decideAsClient(identityId: string, approvalId: string, tenantId: string, approve: boolean, session: string): Promise<ApprovalState["status"]> {
    const { value } = await this.chains.commit(identityId, (state) => {
      const a = state.approval(approvalId, this.now());
      if (!a || a.status !== "pending") return { value: a?.status ?? "expired" };
      return {
        value: approve ? "approved" : "denied",
        draft: { tool: "approval_decided", session, phase: "event", decision: approve ? "approved" : "denied", approvalId, tenantId, via: "client-attested" },
      };
    });
    return value as ApprovalState["status"];
  }

  /**
   * Approvals with their status as the identities' logs say, oldest first. `approver`: only its
   * tenant's approvals that name it or no one; `tenantId`: only that tenant's.
   */
  async list(opts: { approver?: ApproverRecord; tenantId?: string; status?: ApprovalState["status"] } = {}): Promise<ApprovalView[]> {
    const now = this.now();
    const out: ApprovalView[] = [];
    const states = new Map<string, Awaited<ReturnType<AuditChains["state"]>>>();
    for (const rec of await this.store.listApprovals()) {
      if (opts.approver && !visibleTo(rec, opts.approver)) continue;
      if (opts.tenantId !== undefined && rec.tenantId !== opts.tenantId) continue;
      let state = states.get(rec.identityId);
      if (!state) {
        try {
          state = await this.chains.state(rec.identityId);
        } catch {
          continue; // an identity whose log cannot be read has nothing anyone can decide
        }
        states.set(rec.identityId, state);
      }
      const a = state.approval(rec.id, now);
      if (!a) continue; // a request whose entry was never written was never asked
      if (opts.status !== undefined && a.status !== opts.status) continue;
      out.push({
        id: rec.id,
        identityId: rec.identityId,
        tenantId: rec.tenantId,
        tool: rec.tool,
        action: rec.action,
        status: a.status,
        requestedAt: rec.requestedAt,
        expiresAt: rec.expiresAt,
        approvers: rec.approvers,
        quorum: rec.quorum,
        ...(a.decisions.length > 0
          ? { decidedBy: a.decisions.map((d) => ({ ...(d.approverId !== undefined ? { approverId: d.approverId } : {}), decision: d.decision, via: d.via, at: new Date(d.t).toISOString() })) }
          : {}),
      });
    }
    return out;
  }
}
