/**
 * The governed pipeline. Every agent tool call passes through `callAgentTool`, in this order and
 * without exception:
 *
 *   authenticate → validate → session guard → policy (+ human approval) → audit intent (durable)
 *   → act → audit result (durable) → result with its receipt
 *
 * Policy evaluation and the entry that records its decision are one atomic step per identity
 * across processes (see audit/chain.ts). Refusals are audited and answered with
 * `denied: <reason_code>: <sentence>`; provider failures with safe text and a reference id.
 */
import { type CallToolResult, ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { hashesEqual } from "../crypto/core.js";
import { Denied, SigilError, logInternal, refId, safeText, scrubberOf } from "../errors.js";
import { type AuditChains, type Built, type ChainState, type Draft, type Receipt, receiptOf } from "../audit/chain.js";
import type { AuditEntry } from "../audit/entry.js";
import { evaluate, type Decision, type NormalizedAction } from "../policy/evaluate.js";
import { EXFILTRATION } from "../policy/exfiltration.js";
import { type ExfiltrationJournal, stringsOf } from "../policy/exfiltration-journal.js";
import { parsePolicy, type Policy } from "../policy/schema.js";
import { ProviderError } from "../providers/types.js";
import type { Providers } from "../providers/index.js";
import type { IdentityRecord, Store } from "../../store/types.js";
import type { ActiveSigners } from "../identity/keyring.js";
import type { Secrets, VaultReader } from "../identity/secrets.js";
import { viewOf } from "../identity/records.js";
import { jcs } from "../util/jcs.js";
import type { AgentTool, ElicitRequest, ElicitResponse, SessionMemory, ToolContext, ToolOutcome } from "./tool.js";
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
  signers: Pick<ActiveSigners, "active">;
  secrets: Pick<Secrets, "readerFor">;
  /** The exfiltration guard's memory (values read, recent outbound text) per identity. */
  exfiltration: Pick<ExfiltrationJournal, "carries" | "recordRead">;
  /** Refusals past the per-minute limit are answered `throttled` and summarised (throttle.ts). */
  throttle: Pick<RefusalThrottle, "over" | "count">;
  providers: Providers;
  publicUrl?: string;
}

export interface AgentSession {
  deps: AgentDeps;
  identityId: string;
  tokenHash: string;
  sessionId: string;
  memory: SessionMemory;
}

export type Elicit = ((req: ElicitRequest) => Promise<ElicitResponse>) | undefined;

const IDEMPOTENCY_WAIT_MS = 30_000;
/** How long a human's approval stays usable after the question was asked. */
const APPROVAL_VALID_MS = 10 * 60_000;

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
const parsedPolicies = new WeakMap<object, ReturnType<typeof parsePolicy>>();
function cachedPolicy(policy: Record<string, unknown>): ReturnType<typeof parsePolicy> {
  if (policy === null || typeof policy !== "object") return parsePolicy(policy);
  let r = parsedPolicies.get(policy);
  if (!r) parsedPolicies.set(policy, (r = parsePolicy(policy)));
  return r;
}

export async function callAgentTool(session: AgentSession, tool: AgentTool | undefined, name: string, rawArgs: unknown, elicit: Elicit): Promise<CallToolResult> {
  const { deps, identityId, sessionId } = session;
  const chains = deps.chains;
  const hash = deps.hash;
  const throttled = (): CallToolResult => {
    deps.throttle.count(identityId, deps.now());
    return deniedResult(THROTTLED.reason, THROTTLED.message);
  };
  const refuse = async (toolName: string, reason: string, message: string, extra: Partial<Draft> = {}): Promise<CallToolResult> => {
    try {
      const draft = { session: sessionId, tool: toolName, phase: "call", decision: "deny", reason, ...extra } as Draft;
      const { value: over } = await chains.commit(identityId, (state) => (deps.throttle.over(state, deps.now()) ? { value: true } : { value: false, draft }));
      if (over) return throttled();
    } catch (err) {
      const ref = refId();
      logInternal(ref, `audit of a refusal (${reason})`, err);
      return deniedResult("audit_unavailable", `the audit log cannot be written, so nothing was done (${ref}).`);
    }
    return deniedResult(reason, message);
  };

  // 1. authenticate: the credential this session was opened with must still be current.
  let identity: IdentityRecord | undefined;
  try {
    identity = await deps.store.getIdentity(identityId);
  } catch (err) {
    const ref = refId();
    logInternal(ref, "registry read", err);
    return deniedResult("registry_unavailable", `the registry cannot be read, so nothing was done (${ref}).`);
  }
  if (!identity) return deniedResult("revoked", "this identity no longer exists.");
  const toolName = tool?.name ?? unknownToolName(name, hash);
  if (identity.revokedAt) return refuse(toolName, "revoked", "this identity has been revoked.");
  if (!hashesEqual(identity.tokenHash, session.tokenHash)) return refuse(toolName, "token_rotated", "this session's token has been replaced; reconnect with the new token.");
  if (!tool || (tool.channel !== null && !identity.channels.includes(tool.channel))) {
    return refuse(toolName, "tool_not_available", `there is no tool "${safeText(name, 64)}" for this identity.`);
  }

  // 2. validate strictly (unknown keys refused); the log records the argument names, not values.
  const known = new Set(Object.keys(tool.input.shape));
  const parsed = tool.input.safeParse(rawArgs ?? {});
  if (!parsed.success) {
    return refuse(tool.name, "invalid_arguments", describeIssues(parsed.error as never), { args: argumentShape(rawArgs, known, hash) });
  }
  const args = parsed.data as Record<string, unknown>;

  // 3. the exfiltration guard, before anything that records values: no argument of any tool may
  // carry a vault value this identity read in the last 24 hours (any session, any process), nor
  // continue one from what it sent in the last hour. See README "Secrets stay secret".
  try {
    const outbound = tool.channel !== null && tool.channel !== "vault";
    const fields = Object.entries(args).map(([k, v]) => [k, stringsOf(v).join("\n")] as const);
    if (await deps.exfiltration.carries(identityId, fields, outbound)) {
      return refuse(tool.name, EXFILTRATION.reason, EXFILTRATION.message, { args: argumentShape(args, known, hash) });
    }
  } catch (err) {
    const ref = refId();
    logInternal(ref, "exfiltration guard", err);
    const code = err instanceof SigilError ? err.code : "guard_unavailable";
    return refuse(tool.name, code, `the exfiltration guard cannot check this call, so nothing was done (${ref}).`, { args: argumentShape(args, known, hash) });
  }

  let redacted: Record<string, unknown>;
  try {
    redacted = tool.redact(args as never, hash);
  } catch {
    return refuse(tool.name, "invalid_arguments", "the arguments cannot be recorded.", { args: argumentShape(rawArgs, known, hash) });
  }
  const policyParse = cachedPolicy(identity.policy);
  if (!policyParse.ok) return refuse(tool.name, "policy_invalid", "this identity's policy is invalid; ask an administrator to fix it.");
  let policy: Policy = policyParse.policy;
  const ctx: ToolContext = {
    identity: viewOf(identity),
    policy,
    sessionId,
    signer: () => deps.signers.active(identityId),
    vault: guardedReader(deps.secrets.readerFor(identityId), deps.exfiltration, identityId),
    providers: deps.providers,
    memory: session.memory,
    now: deps.now,
    ...(deps.publicUrl !== undefined ? { publicUrl: deps.publicUrl } : {}),
    hash,
  };

  // 3b. the tool's own session checks (e.g. an identity without a phone number of its own).
  const guarded = tool.guard?.(ctx, args as never);
  if (guarded) return refuse(tool.name, guarded.reason, guarded.message, { args: argumentShape(args, known, hash) });

  const action = tool.action(args as never);
  const idemKey = tool.idempotencyKey?.(args as never);
  const argsHash = idemKey !== undefined ? hash(jcs({ tool: tool.name, args: { ...args, idempotencyKey: undefined } })) : undefined;
  let base = { tool: tool.name, session: sessionId, args: redacted, policyVersion: identity.policyVersion };
  /** What the human approved: this exact action under this policy version, once, until `expiresAt`. */
  const actionHash = hash(jcs({ tool: tool.name, args: { ...args, idempotencyKey: undefined } }));
  let approval: { actionHash: string; policyVersion: number; expiresAt: number; used: boolean } | undefined;

  // 4. policy, idempotency and the intent entry: one atomic step under the identity's chain lock.
  type Step =
    | { kind: "denied"; reason: string; message: string }
    | { kind: "approve"; normalized: NormalizedAction }
    | { kind: "go"; normalized: NormalizedAction }
    | { kind: "replay"; result: Record<string, unknown>; receipt: Receipt }
    | { kind: "wait" }
    | { kind: "throttled" };
  const decide = async (state: ChainState): Promise<Built<Step>> => {
    const now = deps.now();
    // Decided on the identity's CURRENT record and policy, read under the chain lock: whatever this
    // call waited for (the lock, a human, an idempotent twin), a revocation, a token rotation or a
    // policy change that took effect meanwhile applies to it.
    const current = await deps.store.getIdentity(identityId);
    if (!current || current.revokedAt) return deny("revoked", "this identity has been revoked.");
    if (!hashesEqual(current.tokenHash, session.tokenHash)) return deny("token_rotated", "this session's token has been replaced; reconnect with the new token.");
    if (tool.channel !== null && !current.channels.includes(tool.channel)) return deny("tool_not_available", `there is no tool "${tool.name}" for this identity.`);
    if (current.policyVersion !== base.policyVersion) {
      const p = cachedPolicy(current.policy);
      if (!p.ok) return deny("policy_invalid", "this identity's policy is invalid; ask an administrator to fix it.");
      policy = p.policy;
      ctx.policy = policy;
      ctx.identity = viewOf(current);
      base = { ...base, policyVersion: current.policyVersion };
    }
    if (idemKey !== undefined) {
      const prior = state.idempotency(tool.name, idemKey, now);
      if (prior) {
        if (prior.argsHash !== argsHash) {
          return deny("idempotency_conflict", "this idempotencyKey was already used with different arguments.");
        }
        if (prior.outcome === "ok" && prior.receipt) {
          return { value: { kind: "replay", result: prior.result ?? {}, receipt: prior.receipt }, draft: { ...base, phase: "call", decision: "replayed", intent: prior.intentSeq } };
        }
        if (prior.outcome === "unknown" || (await orphaned(state, prior.intentSeq))) {
          return deny("outcome_unknown", "an earlier attempt with this idempotencyKey has an unknown outcome; it is not repeated.");
        }
        return { value: { kind: "wait" } };
      }
    }
    const d: Decision = evaluate(policy, action, state, now);
    if (!d.allow) return deny(d.reason, d.message);
    if (d.needsApproval) {
      if (!approval) return { value: { kind: "approve", normalized: d.normalized } };
      // The approval answered a question about one exact action under one policy version.
      if (approval.used || approval.actionHash !== actionHash || approval.policyVersion !== current.policyVersion) {
        return deny("approval_stale", "the policy changed while the human was deciding; the approval does not apply to it, so nothing was done.");
      }
      if (now > approval.expiresAt) return deny("approval_expired", "the human's approval came too late; nothing was done.");
      approval.used = true;
    }
    const amount = d.normalized.kind === "card" ? d.normalized.amountCents : undefined;
    const draft: Draft = {
      ...base,
      phase: tool.effect === "act" ? "intent" : "call",
      decision: "allow",
      instance: deps.instanceId,
      ...(d.needsApproval ? { approval: "accepted" } : {}),
      ...(amount !== undefined ? { amountCents: amount } : {}),
      ...(idemKey !== undefined ? { idem: { key: idemKey, argsHash: argsHash! } } : {}),
    };
    return { value: { kind: "go", normalized: d.normalized }, draft };
  };
  /** An intent whose process is gone will never get its result: its outcome is unknown. */
  const orphaned = async (state: ChainState, seq: number): Promise<boolean> => {
    const open = state.openIntents().find((o) => o.seq === seq);
    if (!open?.instance || open.instance === deps.instanceId) return false;
    return (await deps.store.instanceAlive(open.instance)) === false;
  };
  const deny = (reason: string, message: string): Built<Step> => ({
    value: { kind: "denied", reason, message },
    draft: { ...base, phase: "call", decision: "deny", reason },
  });

  // 4a. The tool's first phase of the act, if it has one (the outbox's fsync'd temporary file), runs
  // while the intent entry is being flushed. It has no effect until `run` completes it; every other
  // way out of this call discards it.
  const preparing = tool.effect === "act" && tool.prepare ? tool.prepare(ctx, args as never).catch(() => undefined) : undefined;
  const dropPrepared = async (): Promise<void> => {
    if (preparing) await preparing.then((p) => p?.discard()).catch(() => {});
  };

  let step: Step;
  let intent: AuditEntry | undefined;
  const started = Date.now();
  try {
    for (;;) {
      const r = await chains.commit(identityId, async (state): Promise<Built<Step>> => {
        const built = await decide(state);
        return built.value.kind === "denied" && deps.throttle.over(state, deps.now()) ? { value: { kind: "throttled" } } : built;
      });
      step = r.value;
      intent = r.entry;
      if (step.kind === "wait") {
        if (Date.now() - started > IDEMPOTENCY_WAIT_MS) {
          await dropPrepared();
          return await refuse(tool.name, "outcome_unknown", "an earlier attempt with this idempotencyKey is still unresolved; it is not repeated.", { args: redacted });
        }
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      if (step.kind === "approve") {
        if (approval) throw new Error("an approval is asked for once per call");
        const askedUnder = base.policyVersion;
        const askedAt = deps.now();
        const answer = await askApproval(tool, args, step.normalized, elicit);
        if (answer !== "accept") {
          const reason = answer === "unsupported" ? "approval_unavailable" : "approval_declined";
          const message =
            answer === "unsupported"
              ? "this action needs a human's approval and this client cannot ask for it."
              : `the human did not approve this action (${answer}).`;
          await dropPrepared();
          return await refuse(tool.name, reason, message, { args: redacted, approval: answer });
        }
        approval = { actionHash, policyVersion: askedUnder, expiresAt: askedAt + APPROVAL_VALID_MS, used: false };
        continue;
      }
      break;
    }
  } catch (err) {
    await dropPrepared();
    const ref = refId();
    logInternal(ref, `audit intent for ${tool.name}`, err);
    return deniedResult("audit_unavailable", `the audit log cannot be written, so nothing was done (${ref}).`);
  }
  if (step.kind !== "go") await dropPrepared();
  if (step.kind === "denied") return deniedResult(step.reason, step.message);
  if (step.kind === "throttled") return throttled();
  if (step.kind === "replay") {
    return {
      content: [{ type: "text", text: `already done with this idempotencyKey (receipt: ${step.receipt.identityId}#${step.receipt.seq})` }],
      structuredContent: { ...step.result, receipt: step.receipt },
    };
  }
  if (step.kind !== "go") throw new Error("unreachable");

  // 5. act.
  let outcome: ToolOutcome | undefined;
  let failure: { decision: "failed" | "unknown"; reason: string; result: CallToolResult } | undefined;
  try {
    outcome = await tool.run(ctx, args as never, step.normalized, await preparing);
  } catch (err) {
    // What the log keeps only as hashes (message bodies…) and the secrets this session read stay out
    // of stderr too, even when a provider's error text echoes them.
    const hidden = Object.entries(args).filter(([k, v]) => typeof v === "string" && redacted[k] !== v).map(([, v]) => v as string);
    failure = mapFailure(tool.name, err, scrubberOf([...hidden, ...session.memory.secretsRead]));
  }
  await dropPrepared(); // a no-op when run completed it

  // 6. the result entry (for "read" tools the call entry already is the record, unless it failed).
  if (tool.effect === "read" && outcome) return successResult(outcome, receiptOf(intent!));
  try {
    const { entry } = await chains.commit(identityId, () => ({
      value: null,
      draft: {
        tool: tool.name,
        session: sessionId,
        phase: "result",
        intent: intent!.seq,
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

async function askApproval(tool: AgentTool, args: Record<string, unknown>, normalized: NormalizedAction, elicit: Elicit): Promise<"accept" | "decline" | "cancel" | "unsupported" | "timeout"> {
  if (!elicit || !tool.approval) return "unsupported";
  try {
    const res = await elicit(tool.approval(args as never, normalized));
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
