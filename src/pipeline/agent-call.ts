/**
 * The governed agent call. Every agent tool call passes these steps, in this order and without
 * exception (docs/ARCHITECTURE.md, "A call, from token to audit line"):
 *
 *   authorize → validate → guard → decide → record intent → act → record result
 *
 * Each step is a method of `AgentCall` below; a step that refuses ends the call with its answer
 * (`Stop`). Deciding and recording the intent are one atomic step per identity across processes
 * (`chains.commit`, see audit/chain.ts), made on the identity's current record read under that lock.
 * Refusals are audited and answered with `denied: <reason_code>: <sentence>`; provider failures
 * with safe text and a reference id.
 */
import { type CallToolResult, ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { hashesEqual } from "../crypto/tokens.js";
import { Denied, SigilError, logInternal, refId, safeText, scrubberOf } from "../errors.js";
import { type AuditChains, type Built, type ChainState, type Draft, type Receipt, receiptOf } from "../audit/chain.js";
import type { AuditEntry } from "../audit/entry.js";
import { evaluate, type Decision, type NormalizedAction } from "../policy/evaluate.js";
import { EXFILTRATION } from "../policy/exfiltration.js";
import { type ExfiltrationJournal, READ_WINDOW_MS, stringsOf } from "../policy/exfiltration-journal.js";
import { parsePolicy } from "../policy/schema.js";
import { ProviderError } from "../providers/types.js";
import type { Providers } from "../providers/index.js";
import type { IdentityRecord, Store } from "../../store/types.js";
import type { ActiveSigners } from "../identity/keyring.js";
import type { Secrets, VaultReader } from "../identity/secrets.js";
import { policyHash, viewOf } from "../identity/records.js";
import { tenantOf } from "../tenant/tenants.js";
import { type Approvals, approvalSettings } from "../approval/approvals.js";
import { type ApprovalStep, approvalStep, awaitDecision } from "../approval/flow.js";
import { RecordTampered, type TokenHashes, behindLog } from "../identity/record-mac.js";
import { jcs } from "../util/jcs.js";
import { crashPoint } from "../util/faults.js";
import type { Inbox } from "../inbound/messages.js";
import type { Grants } from "../oauth/grants.js";
import { type AgentTool, type ElicitRequest, type ElicitResponse, type PreparedAct, type SessionMemory, type ToolContext, type ToolOutcome, availableTo } from "./tool.js";
import { deniedResult, describeIssues, errorResult } from "./results.js";
import { type RefusalThrottle, THROTTLED } from "./throttle.js";

export { deniedResult, describeIssues };

/**
 * What the pipeline works with, built once per process by the composition root (src/app.ts): the
 * registry reads it needs, the audit chains (the only way an entry is written), and what it hands
 * tools as narrow capabilities.
 */
export interface AgentDeps {
  store: Pick<Store, "getIdentity" | "instanceAlive">;
  chains: AuditChains;
  /** This process's instance id (recorded in intent entries). */
  instanceId: string;
  now: () => number;
  hash: (value: string) => string;
  /** Keyed token references: whether a record is behind the identity's log (record-mac.ts, behindLog). */
  tokens: Pick<TokenHashes, "ref">;
  signers: Pick<ActiveSigners, "active">;
  secrets: Pick<Secrets, "readerFor">;
  /** The exfiltration guard's memory (values read, recent outbound text) per identity. */
  exfiltration: Pick<ExfiltrationJournal, "carries" | "recordRead" | "reconcile">;
  /** Refusals past the per-minute limit are answered `throttled` and summarised (throttle.ts). */
  throttle: Pick<RefusalThrottle, "over" | "count">;
  providers: Providers;
  publicUrl?: string;
  /** Durable pending approvals and the client's answers to them (src/approval/approvals.ts). */
  approvals: Pick<Approvals, "record" | "decideAsClient">;
  /** Whether an OAuth grant still stands (src/oauth/grants.ts): a session opened under one is decided on it. */
  oauthGrants?: Pick<Grants, "refusal">;
  /** Inbound messages (src/inbound/messages.ts): tools get a reader for their identity alone. */
  inbox: Pick<Inbox, "readerFor">;
  /** Payment mandates (src/mandates/desk.ts), handed to the mandate tools. */
  mandates?: ToolContext["mandates"];
}

export interface AgentSession {
  deps: AgentDeps;
  identityId: string;
  tokenHash: string;
  /** The OAuth grant the session was opened under (its access token, not the static token). */
  grantId?: string;
  sessionId: string;
  memory: SessionMemory;
}

export type Elicit = ((req: ElicitRequest) => Promise<ElicitResponse>) | undefined;
/** URL-mode elicitation: sends the client a page to open (the approval page); undefined when the client cannot. */
export type ElicitUrl = ((req: { message: string; url: string; elicitationId: string }) => Promise<unknown>) | undefined;
/**
 * MCP progress for this call (`notifications/progress` with the request's progressToken); undefined
 * when the request carried none. Sent while the call waits for a human's decision, so a client
 * whose request timeout resets on progress keeps waiting.
 */
export type Progress = ((p: { progress: number; total?: number; message?: string }) => Promise<void>) | undefined;

const IDEMPOTENCY_WAIT_MS = 30_000;

export async function callAgentTool(session: AgentSession, tool: AgentTool | undefined, name: string, rawArgs: unknown, elicit: Elicit, elicitUrl?: ElicitUrl, progress?: Progress): Promise<CallToolResult> {
  const call = new AgentCall(session, elicit, elicitUrl, progress);
  try {
    const { identity, tool: known } = await call.authorize(tool, name);
    const args = await call.validate(known, rawArgs);
    const governed = await call.guard(known, identity, args);
    const intent = await call.decideAndRecordIntent(governed);
    const done = await call.act(governed, intent);
    return await call.recordResult(governed, intent, done);
  } catch (err) {
    if (err instanceof Stop) return err.result;
    throw err;
  }
}

/** A step ended the call; `result` is its answer. */
class Stop {
  constructor(readonly result: CallToolResult) {}
}

/** A validated call past its guards: what decide, act and record result work with. */
interface Governed {
  tool: AgentTool;
  args: Record<string, unknown>;
  /** The arguments as the log records them (tool.redact). */
  redacted: Record<string, unknown>;
  /** What the tool receives; decide refreshes its identity and policy when the policy changed. */
  ctx: ToolContext;
  /** The identity's policy version the call was validated under. */
  policyVersion: number;
  /** That policy's hash and the identity's tenant: every entry of the call records them, and so its receipt (audit/chain.ts receiptOf). */
  policyHash: string;
  tenant: string;
}

/** What decide concluded, under the chain lock. */
type Step =
  | { kind: "denied"; reason: string; message: string }
  | { kind: "approve"; normalized: NormalizedAction; step: Extract<ApprovalStep, { kind: "request" | "await" }>; expiresAt: number }
  | { kind: "go"; normalized: NormalizedAction }
  | { kind: "replay"; result: Record<string, unknown>; receipt: Receipt }
  | { kind: "wait" }
  | { kind: "throttled" };

/** The recorded decision to act: the entry (intent, or the call entry of a reading tool) and the act's first phase. */
interface Intent {
  entry: AuditEntry;
  normalized: NormalizedAction;
  preparing: Promise<PreparedAct | undefined> | undefined;
}

type Done = { outcome: ToolOutcome; failure?: undefined } | { outcome?: undefined; failure: { decision: "failed" | "unknown"; reason: string; result: CallToolResult } };

/** What decide works with: the action, its idempotency key and hashes, and the durable approval this call asked for or found. */
interface Deciding {
  action: ReturnType<AgentTool["action"]>;
  idemKey: string | undefined;
  argsHash: string | undefined;
  /** What an approval is for: this exact action (keyed hash of its arguments without the idempotency key). */
  actionHash: string;
  /** The approval (src/approval/flow.ts) this call asked for or found, once it has one. */
  approvalId: string | undefined;
}

class AgentCall {
  private readonly deps: AgentDeps;
  private readonly identityId: string;

  constructor(
    private readonly session: AgentSession,
    private readonly elicit: Elicit,
    private readonly elicitUrl?: ElicitUrl,
    private readonly progress?: Progress,
  ) {
    this.deps = session.deps;
    this.identityId = session.identityId;
  }

  /**
   * 1. Authorize: the registry record, read fresh. The credential this session was opened with must
   * still be current, and the tool one of the identity's channels. decide checks all of this again
   * on the record it reads under the chain lock; this read cannot be that one: it gates the guard,
   * whose journal update must not happen for a session that is no longer authorised, and the guard
   * cannot move under the lock (its journal read would then serialise every call of the identity).
   */
  async authorize(tool: AgentTool | undefined, name: string): Promise<{ identity: IdentityRecord; tool: AgentTool }> {
    let identity: IdentityRecord | undefined;
    try {
      identity = await this.deps.store.getIdentity(this.identityId);
    } catch (err) {
      if (err instanceof RecordTampered) throw await this.refuse(tool?.name ?? unknownToolName(name, this.deps.hash), err.code, err.publicMessage);
      const ref = refId();
      logInternal(ref, "registry read", err);
      throw new Stop(deniedResult("registry_unavailable", `the registry cannot be read, so nothing was done (${ref}).`));
    }
    if (!identity) throw new Stop(deniedResult("revoked", "this identity no longer exists."));
    const toolName = tool?.name ?? unknownToolName(name, this.deps.hash);
    if (identity.revokedAt) throw await this.refuse(toolName, "revoked", "this identity has been revoked.");
    if (!hashesEqual(identity.tokenHash, this.session.tokenHash)) {
      throw await this.refuse(toolName, "token_rotated", "this session's token has been replaced; reconnect with the new token.");
    }
    if (!tool || !availableTo(tool, identity.channels)) {
      throw await this.refuse(toolName, "tool_not_available", `there is no tool "${safeText(name, 64)}" for this identity.`);
    }
    return { identity, tool };
  }

  /** 2. Validate strictly against the tool's schema (unknown keys refused); the log records the argument names, not values. */
  async validate(tool: AgentTool, rawArgs: unknown): Promise<Record<string, unknown>> {
    const parsed = tool.input.safeParse(rawArgs ?? {});
    if (!parsed.success) {
      throw await this.refuse(tool.name, "invalid_arguments", describeIssues(parsed.error as never), { args: this.shape(tool, rawArgs) });
    }
    return parsed.data as Record<string, unknown>;
  }

  /**
   * 3. Guard. First the exfiltration guard, before anything records a value: no argument of any
   * tool may carry a vault value this identity read in the last 24 hours (any session, any
   * process), nor continue one from what it sent in the last hour (README "Secrets stay secret").
   * Then the arguments' log form (tool.redact) and the policy (parsed once per version), and the
   * tool's own session checks (e.g. an identity without a phone number of its own).
   */
  async guard(tool: AgentTool, identity: IdentityRecord, args: Record<string, unknown>): Promise<Governed> {
    const { deps, identityId } = this;
    try {
      const outbound = tool.channel !== null && tool.channel !== "vault" && tool.inbound !== true;
      if (await deps.exfiltration.carries(identityId, fieldsOf(args), outbound)) {
        throw await this.refuse(tool.name, EXFILTRATION.reason, EXFILTRATION.message, { args: this.shape(tool, args) });
      }
    } catch (err) {
      if (err instanceof Stop) throw err;
      const ref = refId();
      logInternal(ref, "exfiltration guard", err);
      const code = err instanceof SigilError ? err.code : "guard_unavailable";
      throw await this.refuse(tool.name, code, `the exfiltration guard cannot check this call, so nothing was done (${ref}).`, { args: this.shape(tool, args) });
    }

    let redacted: Record<string, unknown>;
    try {
      redacted = tool.redact(args as never, deps.hash);
    } catch {
      throw await this.refuse(tool.name, "invalid_arguments", "the arguments cannot be recorded.", { args: this.shape(tool, args) });
    }
    const policy = cachedPolicy(identity.policy);
    if (!policy.ok) throw await this.refuse(tool.name, "policy_invalid", "this identity's policy is invalid; ask an administrator to fix it.");
    const ctx: ToolContext = {
      identity: viewOf(identity),
      policy: policy.policy,
      sessionId: this.session.sessionId,
      signer: () => deps.signers.active(identityId),
      vault: guardedReader(deps.secrets.readerFor(identityId), deps.exfiltration, identityId),
      providers: deps.providers,
      memory: this.session.memory,
      now: deps.now,
      ...(deps.publicUrl !== undefined ? { publicUrl: deps.publicUrl } : {}),
      hash: deps.hash,
      inbox: deps.inbox.readerFor(identityId),
      ...(deps.mandates !== undefined ? { mandates: deps.mandates } : {}),
    };
    const refused = tool.guard?.(ctx, args as never);
    if (refused) throw await this.refuse(tool.name, refused.reason, refused.message, { args: this.shape(tool, args) });
    return { tool, args, redacted, ctx, policyVersion: identity.policyVersion, policyHash: cachedPolicyHash(identity.policy), tenant: tenantOf(identity) };
  }

  /**
   * 4–5. Decide and record intent: policy, idempotency and the entry recording the decision, one
   * atomic step under the identity's chain lock (`decide`, retried after waiting for an idempotent
   * twin or asking a human). The tool's first phase of the act, if it has one (the outbox's fsync'd
   * temporary file), runs while the intent entry is being flushed; it has no effect until `act`
   * completes it, and every other way out of the call discards it.
   */
  async decideAndRecordIntent(g: Governed): Promise<Intent> {
    const { tool, args } = g;
    const action = tool.action(args as never);
    const idemKey = tool.idempotencyKey?.(args as never);
    const actionHash = this.deps.hash(jcs({ tool: tool.name, args: { ...args, idempotencyKey: undefined } }));
    const decision: Deciding = { action, idemKey, argsHash: idemKey !== undefined ? actionHash : undefined, actionHash, approvalId: undefined };

    const preparing = tool.effect === "act" && tool.prepare ? tool.prepare(g.ctx, args as never).catch(() => undefined) : undefined;
    const dropPrepared = async (): Promise<void> => {
      if (preparing) await preparing.then((p) => p?.discard()).catch(() => {});
    };

    let step: Step;
    let entry: AuditEntry | undefined;
    const started = Date.now();
    try {
      for (;;) {
        const r = await this.deps.chains.commit(this.identityId, async (state): Promise<Built<Step>> => {
          const built = await this.decide(g, decision, state);
          return built.value.kind === "denied" && this.deps.throttle.over(state, this.deps.now()) ? { value: { kind: "throttled" } } : built;
        });
        step = r.value;
        entry = r.entry;
        if (step.kind === "wait") {
          if (Date.now() - started > IDEMPOTENCY_WAIT_MS) {
            await dropPrepared();
            throw await this.refuse(tool.name, "outcome_unknown", "an earlier attempt with this idempotencyKey is still unresolved; it is not repeated.", { args: g.redacted });
          }
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        if (step.kind === "approve") {
          if (decision.approvalId !== undefined && step.step.kind === "request") throw new Error("an approval is asked for once per call");
          decision.approvalId = step.step.approvalId;
          await this.obtainApproval(g, step, dropPrepared);
          continue;
        }
        break;
      }
    } catch (err) {
      if (err instanceof Stop) throw err;
      await dropPrepared();
      const ref = refId();
      logInternal(ref, `audit intent for ${tool.name}`, err);
      throw new Stop(deniedResult("audit_unavailable", `the audit log cannot be written, so nothing was done (${ref}).`));
    }
    if (step.kind !== "go") await dropPrepared();
    if (step.kind === "denied") throw new Stop(deniedResult(step.reason, step.message));
    if (step.kind === "throttled") throw new Stop(this.throttled());
    if (step.kind === "replay") {
      throw new Stop({
        content: [{ type: "text", text: `already done with this idempotencyKey (receipt: ${step.receipt.identityId}#${step.receipt.seq})` }],
        structuredContent: { ...step.result, receipt: step.receipt },
      });
    }
    if (step.kind !== "go") throw new Error("unreachable");
    return { entry: entry!, normalized: step.normalized, preparing };
  }

  /**
   * 4. Decide, inside `chains.commit`: on the identity's CURRENT record and policy, read under the
   * chain lock — whatever this call waited for (the lock, a human, an idempotent twin), a
   * revocation, a token rotation or a policy change that took effect meanwhile applies to it.
   * Returns the entry to append with the decision (the intent for acting tools, the call for
   * reading ones; a refusal), or none while waiting or asking.
   */
  private async decide(
    g: Governed,
    d: Deciding,
    state: ChainState,
  ): Promise<Built<Step>> {
    const { deps, identityId } = this;
    const { tool } = g;
    const now = deps.now();
    const base = { tool: tool.name, session: this.session.sessionId, args: g.redacted, tenant: g.tenant, policyVersion: g.policyVersion, policyHash: g.policyHash };
    const deny = (reason: string, message: string, extra: Record<string, unknown> = {}): Built<Step> => ({
      value: { kind: "denied", reason, message },
      draft: { ...base, phase: "call", decision: "deny", reason, ...extra },
    });
    let current: IdentityRecord | undefined;
    try {
      current = await deps.store.getIdentity(identityId);
    } catch (err) {
      if (err instanceof RecordTampered) return deny(err.code, err.publicMessage);
      throw err;
    }
    if (!current || current.revokedAt) return deny("revoked", "this identity has been revoked.");
    // An authentic but older record put back into the store (un-revoked, an older policy or token).
    const behind = behindLog(current, state, deps.tokens);
    if (behind) return deny(behind.reason, behind.message);
    if (!hashesEqual(current.tokenHash, this.session.tokenHash)) return deny("token_rotated", "this session's token has been replaced; reconnect with the new token.");
    const grantId = this.session.grantId;
    if (grantId !== undefined) {
      // The grant's record, checked against what the log recorded of it (an older copy put back).
      const no = deps.oauthGrants ? await deps.oauthGrants.refusal(grantId, state.oauthGrant(grantId)) : { reason: "revoked", message: "this session's OAuth grant has been revoked; sign in again from the client." };
      if (no) return deny(no.reason, no.message);
    }
    if (!availableTo(tool, current.channels)) return deny("tool_not_available", `there is no tool "${tool.name}" for this identity.`);
    if (current.policyVersion !== g.policyVersion) {
      const p = cachedPolicy(current.policy);
      if (!p.ok) return deny("policy_invalid", "this identity's policy is invalid; ask an administrator to fix it.");
      g.ctx.policy = p.policy;
      g.ctx.identity = viewOf(current);
      g.policyVersion = current.policyVersion;
      g.policyHash = cachedPolicyHash(current.policy);
      base.policyVersion = current.policyVersion;
      base.policyHash = g.policyHash;
    }
    if (d.idemKey !== undefined) {
      const prior = state.idempotency(tool.name, d.idemKey, now);
      if (prior) {
        if (prior.argsHash !== d.argsHash) {
          return deny("idempotency_conflict", "this idempotencyKey was already used with different arguments.");
        }
        if (prior.outcome === "ok" && prior.receipt) {
          return { value: { kind: "replay", result: prior.result ?? {}, receipt: prior.receipt }, draft: { ...base, phase: "call", decision: "replayed", intent: prior.intentSeq } };
        }
        if (prior.outcome === "unknown" || (await this.orphaned(state, prior.intentSeq))) {
          return deny("outcome_unknown", "an earlier attempt with this idempotencyKey has an unknown outcome; it is not repeated.");
        }
        return { value: { kind: "wait" } };
      }
    }
    // The guard's journal lives in the store; the log says which secrets were handed out. An
    // outbound call is refused while the journal lacks one that cannot be rebuilt from the vault.
    if (tool.channel !== null && tool.channel !== "vault" && tool.inbound !== true) {
      const logged = state.vaultReadsSince(now - READ_WINDOW_MS);
      if (logged.length > 0) {
        let gap: { reason: string; message: string } | undefined;
        try {
          gap = await deps.exfiltration.reconcile(identityId, logged, fieldsOf(g.args));
        } catch (err) {
          const ref = refId();
          logInternal(ref, "exfiltration guard", err);
          gap = { reason: err instanceof SigilError ? err.code : "guard_unavailable", message: `the exfiltration guard cannot check this call, so nothing was done (${ref}).` };
        }
        if (gap) return deny(gap.reason, gap.message);
      }
    }
    const decision: Decision = evaluate(g.ctx.policy, d.action, state, now, { untrustedInput: (this.session.memory.untrustedSeen?.size ?? 0) > 0 });
    if (!decision.allow) return deny(decision.reason, decision.message);
    const held = tool.checkState?.(g.ctx, g.args as never, decision.normalized, state, now);
    if (held) return deny(held.reason, held.message);
    let usedApproval: string | undefined;
    if (decision.needsApproval) {
      // A durable approval bound to this exact action and policy version, decided by approvers or
      // the client, used once, expiring (src/approval/flow.ts; README "Approvals").
      const settings = approvalSettings(g.ctx.policy);
      const s = await approvalStep(
        state,
        {
          identityId,
          tenantId: current.tenantId ?? "default",
          session: this.session.sessionId,
          tool: tool.name,
          redacted: g.redacted,
          actionHash: d.actionHash,
          policyVersion: current.policyVersion,
          idemKey: d.idemKey,
          settings,
          approvalId: d.approvalId,
          clientCanAnswer: this.elicit !== undefined,
          now,
        },
        (r) => deps.approvals.record(r),
      );
      if (s.kind === "deny") {
        return deny(s.reason, s.message, { ...(s.approvalId ? { approvalId: s.approvalId } : {}), ...(s.reason === "approval_unavailable" ? { approval: "unsupported" } : {}) });
      }
      if (s.kind === "request") return { value: { kind: "approve", normalized: decision.normalized, step: s, expiresAt: now + s.settings.timeoutMs }, draft: s.draft };
      if (s.kind === "await") return { value: { kind: "approve", normalized: decision.normalized, step: s, expiresAt: state.approval(s.approvalId)!.expiresAt } };
      usedApproval = s.approvalId;
    }
    const amount = decision.normalized.kind === "card" ? decision.normalized.amountCents : undefined;
    const draft: Draft = {
      ...base,
      phase: tool.effect === "act" ? "intent" : "call",
      decision: "allow",
      instance: deps.instanceId,
      ...(usedApproval !== undefined ? { approval: "accepted", approvalId: usedApproval } : {}),
      ...(amount !== undefined ? { amountCents: amount } : {}),
      ...(d.idemKey !== undefined ? { idem: { key: d.idemKey, argsHash: d.argsHash! } } : {}),
    };
    return { value: { kind: "go", normalized: decision.normalized }, draft };
  }

  /**
   * Human approval, outside the chain lock (src/approval/flow.ts `awaitDecision`): the approval
   * page's URL to a client that opens URLs, the client's own form answer when policy lets the
   * client decide (recorded `client-attested`), then waiting until the log holds a decision or the
   * deadline passes; decide is then made again and reads the outcome from the log. A client that
   * was asked and did not approve ends the call (audited).
   */
  private async obtainApproval(g: Governed, step: Extract<Step, { kind: "approve" }>, dropPrepared: () => Promise<void>): Promise<void> {
    const { deps, identityId, elicit, elicitUrl, progress } = this;
    const { tool, args } = g;
    const id = step.step.approvalId;
    const tenantId = g.ctx.identity.tenantId ?? "default";
    const answer = await awaitDecision(id, step.step.kind === "request", step.step.settings, step.expiresAt, {
      status: async (x) => (await deps.chains.state(identityId)).approval(x, deps.now())?.status,
      clientDecided: async (x, approve) => {
        await deps.approvals.decideAsClient(identityId, x, tenantId, approve, this.session.sessionId);
      },
      ...(elicit ? { askClient: () => askApproval(tool, args, step.normalized, elicit) } : {}),
      ...(elicitUrl && deps.publicUrl !== undefined
        ? {
            sendUrl: async (x: string) => {
              await elicitUrl({ message: `Approve or deny this ${tool.name} (approval ${x}) on the approval page.`, url: `${deps.publicUrl}/console/approvals/${x}`, elicitationId: x });
            },
          }
        : {}),
      ...(progress ? { progress: (waitedMs: number, totalMs: number) => progress({ progress: waitedMs, total: totalMs, message: `waiting for a human's decision on approval ${id}` }) } : {}),
      now: deps.now,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    });
    if (answer !== undefined) {
      await dropPrepared();
      throw await this.refuse(tool.name, "approval_declined", `the human did not approve this action (${answer}) (approval ${id}).`, { args: g.redacted, approval: answer, approvalId: id });
    }
  }

  /** An intent whose process is gone will never get its result: its outcome is unknown. */
  private async orphaned(state: ChainState, seq: number): Promise<boolean> {
    const open = state.openIntents().find((o) => o.seq === seq);
    if (!open?.instance || open.instance === this.deps.instanceId) return false;
    return (await this.deps.store.instanceAlive(open.instance)) === false;
  }

  /** 6. Act: `tool.run` with only the normalised values policy approved. A failure is classified, never retried. */
  async act(g: Governed, intent: Intent): Promise<Done> {
    const { tool, args } = g;
    let done: Done;
    // Test crash points (SIGIL_TEST_CRASH): the intent is durable, nothing acted; the act done, its result not recorded.
    crashPoint(`${tool.name}:after-intent`);
    try {
      done = { outcome: await tool.run(g.ctx, args as never, intent.normalized, await intent.preparing) };
      crashPoint(`${tool.name}:after-act`);
    } catch (err) {
      // What the log keeps only as hashes (message bodies…) and the secrets this session read stay out
      // of stderr too, even when a provider's error text echoes them.
      const hidden = Object.entries(args).filter(([k, v]) => typeof v === "string" && g.redacted[k] !== v).map(([, v]) => v as string);
      done = { failure: mapFailure(tool.name, err, scrubberOf([...hidden, ...this.session.memory.secretsRead])) };
    }
    if (intent.preparing) await intent.preparing.then((p) => p?.discard()).catch(() => {}); // a no-op when run completed it
    return done;
  }

  /**
   * 7. Record result: `ok`, `failed` or `unknown`, and the answer with its receipt. For "read" tools
   * the call entry already is the record, unless it failed. If the result cannot be recorded, the
   * answer says the action was carried out but not recorded.
   */
  async recordResult(g: Governed, intent: Intent, { outcome, failure }: Done): Promise<CallToolResult> {
    const { tool } = g;
    if (tool.effect === "read" && outcome) return successResult(outcome, receiptOf(intent.entry));
    try {
      const { entry } = await this.deps.chains.commit(this.identityId, () => ({
        value: null,
        draft: {
          tool: tool.name,
          session: this.session.sessionId,
          phase: "result",
          intent: intent.entry.seq,
          tenant: g.tenant,
          policyVersion: g.policyVersion,
          policyHash: g.policyHash,
          // The approval the intent used, so that the result's receipt names it too.
          ...(typeof intent.entry.approvalId === "string" ? { approvalId: intent.entry.approvalId } : {}),
          decision: outcome ? "ok" : failure!.decision,
          ...(failure ? { reason: failure.reason } : {}),
          ...(outcome?.providerId ? { providerId: outcome.providerId } : {}),
          ...(outcome ? { result: outcome.audit ?? outcome.structured } : {}),
        },
      }));
      if (failure) return failure.result;
      return successResult(outcome!, receiptOf(entry!));
    } catch (err) {
      const ref = refId();
      logInternal(ref, `audit result for ${tool.name}`, err);
      if (failure) return failure.result;
      return errorResult(
        "audit_unavailable",
        `the action was carried out${outcome?.providerId ? ` (${outcome.providerId})` : ""} but its result could not be recorded (${ref}).`,
      );
    }
  }

  /**
   * A refusal: its audit entry first (or `throttled` past the per-minute limit, or
   * `audit_unavailable` if it cannot be written), then the `Stop` carrying the answer.
   */
  private async refuse(toolName: string, reason: string, message: string, extra: Partial<Draft> = {}): Promise<Stop> {
    const { deps } = this;
    try {
      const draft = { session: this.session.sessionId, tool: toolName, phase: "call", decision: "deny", reason, ...extra } as Draft;
      const { value: over } = await deps.chains.commit(this.identityId, (state) => (deps.throttle.over(state, deps.now()) ? { value: true } : { value: false, draft }));
      if (over) return new Stop(this.throttled());
    } catch (err) {
      const ref = refId();
      logInternal(ref, `audit of a refusal (${reason})`, err);
      return new Stop(deniedResult("audit_unavailable", `the audit log cannot be written, so nothing was done (${ref}).`));
    }
    return new Stop(deniedResult(reason, message));
  }

  private throttled(): CallToolResult {
    this.deps.throttle.count(this.identityId, this.deps.now());
    return deniedResult(THROTTLED.reason, THROTTLED.message);
  }

  /** The argument names of a refused call, as the log keeps them (argumentShape). */
  private shape(tool: AgentTool, raw: unknown): Record<string, unknown> {
    return argumentShape(raw, new Set(Object.keys(tool.input.shape)), this.deps.hash);
  }
}

function successResult(out: ToolOutcome, receipt: Receipt): CallToolResult {
  return {
    content: [{ type: "text", text: `${out.text} (receipt: ${receipt.identityId}#${receipt.seq})` }],
    structuredContent: { ...out.structured, receipt },
  };
}

/**
 * What the log records of arguments it does not keep: their names — the tool's own argument names
 * as they are, any other name only as a keyed hash (an unknown name may carry a secret).
 */
function argumentShape(raw: unknown, known: ReadonlySet<string>, hash: (v: string) => string): Record<string, unknown> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { type: raw === null ? "null" : Array.isArray(raw) ? "array" : typeof raw };
  return { keys: Object.keys(raw).slice(0, 20).map((k) => (known.has(k) ? k : `unknown:${hash(k)}`)) };
}

/** A call's arguments as the exfiltration guard reads them: by name, every string in each as text. */
function fieldsOf(args: Record<string, unknown>): Array<readonly [string, string]> {
  return Object.entries(args).map(([k, v]) => [k, stringsOf(v).join("\n")] as const);
}

/** A vault reader that records each value in the exfiltration guard's journal before returning it. */
function guardedReader(reader: VaultReader, journal: AgentDeps["exfiltration"], identityId: string): VaultReader {
  return {
    async get(name) {
      const v = await reader.get(name);
      if (v) await journal.recordRead(identityId, { name: v.name, version: v.version, value: v.value });
      return v;
    },
  };
}

/** How the log names a tool that does not exist: a keyed hash of the name given (it may carry a secret). */
const unknownToolName = (name: string, hash: (v: string) => string): string => `unknown:${hash(String(name))}`;

/**
 * Parsed policies, keyed by the registry's policy object. The store hands out the same (never
 * mutated) record while the identity's file is unchanged, and a new object after any update, so a
 * policy is parsed once per version instead of on every call.
 */
/** The policy's hash as audit entries record it (identity/records.ts), once per policy object. */
const policyHashes = new WeakMap<object, string>();
function cachedPolicyHash(policy: Record<string, unknown>): string {
  if (policy === null || typeof policy !== "object") return policyHash(policy);
  let h = policyHashes.get(policy);
  if (h === undefined) policyHashes.set(policy, (h = policyHash(policy)));
  return h;
}

const parsedPolicies = new WeakMap<object, ReturnType<typeof parsePolicy>>();
function cachedPolicy(policy: Record<string, unknown>): ReturnType<typeof parsePolicy> {
  if (policy === null || typeof policy !== "object") return parsePolicy(policy);
  let r = parsedPolicies.get(policy);
  if (!r) parsedPolicies.set(policy, (r = parsePolicy(policy)));
  return r;
}
/**
 * The question for a tool without its own (`tool.approval`): the tool and its arguments (already
 * cleared by the exfiltration guard), shortened to what a prompt can show.
 */
function genericQuestion(tool: AgentTool, args: Record<string, unknown>): ElicitRequest {
  const shown = JSON.stringify({ ...args, idempotencyKey: undefined });
  return {
    message: `Approve ${tool.name} with ${shown.length > 1000 ? `${shown.slice(0, 1000)}…` : shown}?`,
    requestedSchema: {
      type: "object",
      properties: { approve: { type: "boolean", title: `Allow this ${tool.name}`, description: "Set to true to allow this action.", default: false } },
      required: ["approve"],
    },
  };
}

async function askApproval(tool: AgentTool, args: Record<string, unknown>, normalized: NormalizedAction, elicit: Elicit): Promise<"accept" | "decline" | "cancel" | "unsupported" | "timeout"> {
  if (!elicit) return "unsupported";
  try {
    const res = await elicit(tool.approval ? tool.approval(args as never, normalized) : genericQuestion(tool, args));
    if (res.action !== "accept") return res.action;
    // Only an explicit approve: true approves; an `accept` without it approves nothing.
    return res.content?.approve === true ? "accept" : "decline";
  } catch (err) {
    if (err instanceof SigilError && err.code === "timeout") return "timeout";
    if (err instanceof McpError && err.code === ErrorCode.RequestTimeout) return "timeout";
    return "cancel";
  }
}

function mapFailure(toolName: string, err: unknown, scrub?: (s: string) => string): { decision: "failed" | "unknown"; reason: string; result: CallToolResult } {
  if (err instanceof Denied) {
    return { decision: "failed", reason: err.code, result: deniedResult(err.code, err.publicMessage) };
  }
  const ref = refId();
  logInternal(ref, `${toolName} failed`, err, scrub);
  if (err instanceof ProviderError) {
    if (err.kind === "unknown") {
      return {
        decision: "unknown",
        reason: "provider_unknown",
        result: errorResult("provider_unknown", `${err.publicMessage}; it will not be retried automatically (${ref}).`),
      };
    }
    const code = err.kind === "rejected" ? "provider_rejected" : "provider_unavailable";
    // The provider's message already says what happened (nothing was sent, nothing was charged).
    return { decision: "failed", reason: code, result: errorResult(code, `${err.publicMessage} (${ref}).`) };
  }
  if (err instanceof SigilError) return { decision: "failed", reason: err.code, result: errorResult(err.code, `${err.publicMessage} (${ref})`) };
  return { decision: "unknown", reason: "internal_error", result: errorResult("internal_error", `the action failed unexpectedly (${ref}).`) };
}
