/**
 * The approval flow as the agent pipeline runs it (src/pipeline/agent-call.ts; README:
 * "Approvals"). Two halves:
 *
 * - `approvalStep`, inside the identity's chain section (decide): given that policy says this
 *   action needs approval, what the log says about its approval — ask for one (the
 *   `approval_requested` entry, the request stored first), wait for the one asked, refuse (denied,
 *   timed out, asked under another policy version, already used), or go with it (the intent
 *   entry then carries `approvalId` and uses it).
 * - `awaitDecision`, outside the lock: tell the client where to decide (URL-mode elicitation to
 *   the console's approval page), ask the client itself when policy allows it (form elicitation:
 *   `client-attested`), and wait for the log to hold a decision or for the deadline. Then decide
 *   runs again, on the identity's current record and policy.
 */
import { randomId } from "../crypto/tokens.js";
import type { ApprovalState, ChainState, Draft } from "../audit/chain.js";
import type { ApprovalRecord } from "../../store/types.js";
import { APPROVAL_USE_WINDOW_MS, type ApprovalSettings, Approvals } from "./approvals.js";

export type ApprovalStep =
  | { kind: "go"; approvalId: string }
  | { kind: "deny"; reason: string; message: string; approvalId?: string }
  | { kind: "request"; approvalId: string; draft: Draft; settings: ApprovalSettings }
  | { kind: "await"; approvalId: string; settings: ApprovalSettings };

export interface ApprovalAsk {
  identityId: string;
  tenantId: string;
  session: string;
  tool: string;
  /** The arguments as the log records them (shown to approvers). */
  redacted: Record<string, unknown>;
  actionHash: string;
  policyVersion: number;
  idemKey: string | undefined;
  settings: ApprovalSettings;
  /** The approval this call asked for or found, once it has one. */
  approvalId: string | undefined;
  /** Whether the connected client can answer a form (needed when `client` is the only way). */
  clientCanAnswer: boolean;
  now: number;
}

/** Where a request is stored before its entry is written. */
export type RecordRequest = (r: ApprovalRecord) => Promise<void>;

const closedMessage = (a: ApprovalState): string => `(approval ${a.id})`;

/** Decide, under the chain lock, what this call's approval allows (see the module comment). */
export async function approvalStep(state: ChainState, ask: ApprovalAsk, record: RecordRequest): Promise<ApprovalStep> {
  const { now } = ask;
  let a: ApprovalState | undefined;
  let viaRetry = false;
  if (ask.approvalId !== undefined) a = state.approval(ask.approvalId, now);
  else if (ask.idemKey !== undefined) {
    // A retry with the same idempotencyKey: the approval asked for the first attempt, if any.
    a = state.approvalFor(ask.tool, ask.idemKey, now);
    viaRetry = a !== undefined;
    if (a && a.actionHash !== ask.actionHash) {
      return { kind: "deny", reason: "idempotency_conflict", message: `this idempotencyKey was already used with different arguments ${closedMessage(a)}; an approval is for one exact action.` };
    }
    // A question nobody answered in time is asked again; a decision is not.
    if (a && a.status === "expired") a = undefined;
  }
  if (!a) {
    if (!ask.settings.via.includes("approver") && !ask.clientCanAnswer) {
      return { kind: "deny", reason: "approval_unavailable", message: "this action needs a human's approval and this client cannot ask for it." };
    }
    const id = randomId("apv_");
    const requestedAt = new Date(now).toISOString();
    const r: ApprovalRecord = {
      id,
      identityId: ask.identityId,
      tenantId: ask.tenantId,
      tool: ask.tool,
      action: ask.redacted,
      actionHash: ask.actionHash,
      policyVersion: ask.policyVersion,
      approvers: ask.settings.via.includes("approver") ? ask.settings.approvers : [],
      quorum: ask.settings.quorum,
      via: ask.settings.via,
      requestedAt,
      expiresAt: new Date(now + ask.settings.timeoutMs).toISOString(),
    };
    await record(r);
    return { kind: "request", approvalId: id, draft: Approvals.requestDraft(r, ask.session, ask.settings.requirePasskey, ask.idemKey), settings: ask.settings };
  }
  // An approval is for the policy version it was asked under: a change since refuses it.
  if (a.policyVersion !== ask.policyVersion) {
    return { kind: "deny", reason: "approval_stale", message: `the policy changed after the approval was asked; it does not apply to the current policy, so nothing was done ${closedMessage(a)}.`, approvalId: a.id };
  }
  if (a.actionHash !== ask.actionHash) return { kind: "deny", reason: "approval_stale", message: `the approval is for another action ${closedMessage(a)}.`, approvalId: a.id };
  switch (a.status) {
    case "pending":
      return { kind: "await", approvalId: a.id, settings: ask.settings };
    case "denied":
      return { kind: "deny", reason: "approval_denied", message: `the approver${a.decisions.some((d) => d.via === "client-attested") ? " (client)" : ""} denied this action ${closedMessage(a)}.`, approvalId: a.id };
    case "expired":
      return { kind: "deny", reason: "approval_timeout", message: `no decision came before ${new Date(a.expiresAt).toISOString()}, so nothing was done ${closedMessage(a)}.`, approvalId: a.id };
    case "used":
      return { kind: "deny", reason: "approval_used", message: `the approval was already used; an approval allows one action ${closedMessage(a)}.`, approvalId: a.id };
    case "approved":
      if (now > a.expiresAt + APPROVAL_USE_WINDOW_MS) {
        return { kind: "deny", reason: "approval_expired", message: `the approval expired before it was used ${closedMessage(a)}.`, approvalId: a.id };
      }
      void viaRetry;
      return { kind: "go", approvalId: a.id };
  }
}

export type ClientAnswer = "accept" | "decline" | "cancel" | "timeout" | "unsupported";

export interface AwaitDeps {
  /** The log's view of the approval (catching up on what other processes appended). */
  status(approvalId: string): Promise<ApprovalState["status"] | undefined>;
  /** Records the connected client's answer (`client-attested`). */
  clientDecided(approvalId: string, approve: boolean): Promise<void>;
  /** Asks the client with a form; undefined when it cannot answer one. */
  askClient?: () => Promise<ClientAnswer>;
  /** Sends the client the approval page's URL (URL-mode elicitation); undefined when it cannot open one. */
  sendUrl?: (approvalId: string) => Promise<void>;
  /** Tells the client the call is still waiting (MCP progress): milliseconds waited, and the wait's length. */
  progress?: (waitedMs: number, totalMs: number) => Promise<void>;
  now(): number;
  sleep(ms: number): Promise<void>;
  pollMs?: number;
}

/** How often a waiting call tells its client it is still waiting (MCP progress notifications). */
export const PROGRESS_EVERY_MS = 1000;

/**
 * Outside the lock: tells the client where to decide, asks it if policy allows, then waits until the
 * log holds a decision or the deadline passes. Returns the client's answer when it was asked and did
 * not approve (the caller refuses with it), else undefined (decide runs again and reads the log).
 */
export async function awaitDecision(approvalId: string, fresh: boolean, settings: ApprovalSettings, expiresAt: number, deps: AwaitDeps): Promise<ClientAnswer | undefined> {
  if (fresh && deps.sendUrl) void deps.sendUrl(approvalId).catch(() => {});
  if (fresh && settings.via.includes("client") && deps.askClient) {
    const answer = await deps.askClient();
    if (answer === "accept" || answer === "decline") await deps.clientDecided(approvalId, answer === "accept");
    // A decline is a decision; no answer (cancel, timeout) leaves it to the approvers, if policy has any.
    if (answer === "decline" || (answer !== "accept" && !settings.via.includes("approver"))) return answer;
  }
  const poll = deps.pollMs ?? 200;
  const started = deps.now();
  let told = -Infinity;
  for (;;) {
    const status = await deps.status(approvalId);
    if (status !== "pending") return undefined;
    if (deps.now() > expiresAt) return undefined;
    // Progress while waiting, so that a client whose own request timeout is shorter than the
    // approval's (and resets on progress) does not give up on a call that is still alive.
    if (deps.progress && deps.now() - told >= PROGRESS_EVERY_MS) {
      told = deps.now();
      await deps.progress(told - started, Math.max(1, expiresAt - started)).catch(() => {});
    }
    await deps.sleep(Math.min(poll, Math.max(1, expiresAt - deps.now() + 1)));
  }
}
