/**
 * Approvals: pending ones with the exact action and the policy rule that asked for a human, approve
 * or deny (approvers: the `decide_approval` tool, signed with their key; or with a passkey, see
 * passkeys.ts), and the history with who decided and how. `/console/approvals/<id>` is the page
 * URL-mode elicitation sends the human to (src/pipeline/agent-call.ts). Admins see their tenant's
 * approvals (root: all) read-only: deciding is an approver's.
 */
import type { ApprovalView } from "../../approval/approvals.js";
import { type Html, frag, html } from "../html.js";
import { redirect } from "../http-util.js";
import type { Ctx, Route } from "../routes.js";
import { approverCall, sentence } from "../ops.js";
import { passkeysOf } from "./passkeys.js";
import { PAGE_SIZE, csrfField, pageNumber, pager, pretty, render, when } from "./common.js";

/** The approvals the signed-in human may see: an approver's own (through list_approvals), an admin's tenant's. */
export async function visibleApprovals(ctx: Ctx): Promise<ApprovalView[]> {
  const p = ctx.principal;
  if (p.kind === "approver") {
    const r = await approverCall(ctx, "list_approvals", {});
    return r.ok ? (r.value.approvals as ApprovalView[]) : [];
  }
  return ctx.app.approvals.list(p.tenantId !== undefined ? { tenantId: p.tenantId } : {});
}

/** Which rule of the identity's policy (as it stands, if still the version asked under) asked for a human. */
async function askedBecause(ctx: Ctx, a: ApprovalView): Promise<string> {
  const rec = await ctx.app.store.getIdentity(a.identityId).catch(() => undefined);
  const asked = await ctx.app.store.getApproval(a.id);
  if (!rec || !asked) return "—";
  if (rec.policyVersion !== asked.policyVersion) return `policy version ${asked.policyVersion} (the identity is at version ${rec.policyVersion} now)`;
  const policy = rec.policy as { approvalAboveCents?: number; approval?: { aboveCents?: number; tools?: string[]; newRecipients?: boolean; requirePasskey?: boolean } };
  const reasons: string[] = [];
  const amount = typeof a.action.amountCents === "number" ? a.action.amountCents : undefined;
  if (a.tool === "card_charge" && amount !== undefined) {
    if (policy.approvalAboveCents !== undefined && amount > policy.approvalAboveCents) reasons.push(`approvalAboveCents: ${policy.approvalAboveCents} (this charge: ${amount})`);
    if (policy.approval?.aboveCents !== undefined && amount > policy.approval.aboveCents) reasons.push(`approval.aboveCents: ${policy.approval.aboveCents} (this charge: ${amount})`);
  }
  if (policy.approval?.tools?.includes(a.tool)) reasons.push(`approval.tools includes ${a.tool}`);
  if (reasons.length === 0 && policy.approval?.newRecipients) reasons.push("approval.newRecipients: a recipient this identity never sent to");
  if (policy.approval?.requirePasskey) reasons.push("approval.requirePasskey: approve with a passkey");
  return `${reasons.join("; ") || "the policy's approval rules"} (policy version ${asked.policyVersion})`;
}

function status(a: ApprovalView): Html {
  const cls = a.status === "approved" || a.status === "used" ? "ok" : a.status === "pending" ? "" : "bad";
  return frag(html`<span class="chip ${cls}">${a.status}</span>`);
}

function decidedBy(a: ApprovalView): Html | string {
  if (!a.decidedBy?.length) return "—";
  return frag(html`${a.decidedBy.map((d) => frag(html`<div>${d.decision} by ${d.approverId ?? "the client"} via <strong>${d.via}</strong> at ${when(d.at)}</div>`))}`);
}

async function listPage(ctx: Ctx): Promise<void> {
  const t0 = performance.now();
  const all = (await visibleApprovals(ctx)).reverse(); // newest first
  const pending = all.filter((a) => a.status === "pending");
  const history = all.filter((a) => a.status !== "pending");
  const pageNo = pageNumber(ctx.url);
  const rows = history.slice((pageNo - 1) * PAGE_SIZE, pageNo * PAGE_SIZE);
  ctx.res.setHeader("server-timing", `approvals;dur=${(performance.now() - t0).toFixed(1)}`);
  render(ctx, {
    title: "Approvals",
    section: "approvals",
    body: frag(html`<h1>Approvals</h1>
<h2>Waiting for a decision (${pending.length})</h2>
${pending.length === 0 ? frag(html`<p class="muted">Nothing is waiting.</p>`) : ""}
<table><thead><tr><th>Approval</th><th>Identity</th><th>Action</th><th>Requested</th><th>Decide before</th></tr></thead><tbody>
${pending.map((a) => frag(html`<tr><td><a href="/console/approvals/${a.id}">${a.id}</a></td><td class="mono">${a.identityId}</td><td><strong>${a.tool}</strong> <code>${JSON.stringify(a.action)}</code></td><td>${when(a.requestedAt)}</td><td>${when(a.expiresAt)}</td></tr>`))}
</tbody></table>
<h2>History</h2>
${pager(ctx.url, pageNo, history.length > pageNo * PAGE_SIZE, history.length)}
<table><thead><tr><th>Approval</th><th>Identity</th><th>Tool</th><th>Status</th><th>Who and how</th></tr></thead><tbody>
${rows.map((a) => frag(html`<tr><td><a href="/console/approvals/${a.id}">${a.id}</a></td><td class="mono">${a.identityId}</td><td>${a.tool}</td><td>${status(a)}</td><td>${decidedBy(a)}</td></tr>`))}
</tbody></table>`),
  });
}

async function detailPage(ctx: Ctx, id: string, status_ = 200): Promise<void> {
  const a = (await visibleApprovals(ctx)).find((x) => x.id === id);
  if (!a) {
    return render(ctx, { title: "Not found", section: "approvals", body: frag(html`<h1>Not found</h1><p class="notice error">No approval ${id} that you may see.</p><p><a href="/console/approvals">All approvals</a></p>`) }, 404);
  }
  const because = await askedBecause(ctx, a);
  const canDecide = ctx.principal.kind === "approver" && a.status === "pending";
  const passkeys = ctx.principal.kind === "approver" ? await passkeysOf(ctx, ctx.principal.approverId) : [];
  // What the log says the request asked for (the policy may have changed since).
  const requirePasskey = (await ctx.app.chains.state(a.identityId)).approval(a.id, ctx.app.now())?.requirePasskey === true;
  render(
    ctx,
    {
      title: `Approval ${a.id}`,
      section: "approvals",
      scripts: canDecide && passkeys.length > 0 ? ["/console/assets/webauthn.js", "/console/assets/passkey.js"] : [],
      body: frag(html`<p><a href="/console/approvals">← Approvals</a></p>
<h1>Approval <span class="mono">${a.id}</span> ${status(a)}</h1>
<table>
<tr><th>Identity</th><td class="mono">${a.identityId} (tenant ${a.tenantId})</td></tr>
<tr><th>Tool</th><td><strong>${a.tool}</strong></td></tr>
<tr><th>Exact action</th><td><pre id="approval-action">${pretty(a.action)}</pre><p class="muted">As the audit log records it (message bodies as keyed hashes). Approving allows exactly this, once.</p></td></tr>
<tr><th>Asked because</th><td id="approval-rule">${because}</td></tr>
<tr><th>Approvers</th><td>${a.approvers.length ? a.approvers.join(", ") : "any approver of the tenant"}; quorum ${a.quorum}</td></tr>
<tr><th>Requested</th><td>${when(a.requestedAt)}</td></tr>
<tr><th>Decide before</th><td>${when(a.expiresAt)}</td></tr>
<tr><th>Decisions</th><td>${decidedBy(a)}</td></tr>
</table>
${canDecide
  ? frag(html`<h2>Decide</h2>
<form method="post" action="/console/approvals/${a.id}/decide" id="decide-form">
${csrfField(ctx)}
<label for="reason">Reason (optional; recorded in the audit log)</label><input type="text" id="reason" name="reason" maxlength="500">
<p class="row">${requirePasskey ? "" : frag(html`<button type="submit" name="decision" value="approve" class="primary">Approve</button>`)}<button type="submit" name="decision" value="deny" class="danger">Deny</button></p>
</form>
${passkeys.length > 0
  ? frag(html`<form method="post" action="/console/approvals/${a.id}/passkey" id="passkey-approve" data-approval="${a.id}"><input type="hidden" name="csrf" value="${ctx.csrf}"><button type="submit" class="primary">Approve with a passkey</button><p class="field-error" id="passkey-error" role="alert" hidden></p></form>`)
  : requirePasskey
    ? frag(html`<p class="notice error">This approval must be approved with a passkey: <a href="/console/passkeys">register one</a> first.</p>`)
    : ""}`)
  : ""}`),
    },
    status_,
  );
}

async function decide(ctx: Ctx, id: string): Promise<void> {
  const decision = ctx.form!.get("decision");
  const reason = (ctx.form!.get("reason") ?? "").trim();
  if (decision !== "approve" && decision !== "deny") {
    ctx.session.notice = { kind: "error", text: "Choose approve or deny; nothing was recorded." };
    return redirect(ctx.res, `/console/approvals/${id}`);
  }
  const r = await approverCall(ctx, "decide_approval", { approvalId: id, decision, ...(reason ? { reason } : {}) });
  ctx.session.notice = r.ok ? { kind: "ok", text: `You ${decision === "approve" ? "approved" : "denied"} ${id}; its status is now ${r.value.status}.` } : { kind: "error", text: sentence(r) };
  redirect(ctx.res, `/console/approvals/${id}`);
}

const APV = "(apv_[0-9a-f]{20})";
export const approvalRoutes: Route[] = [
  { method: "GET", path: /^\/console\/approvals$/, run: listPage },
  { method: "GET", path: new RegExp(`^/console/approvals/${APV}$`), run: (ctx, [id]) => detailPage(ctx, id!) },
  { method: "POST", path: new RegExp(`^/console/approvals/${APV}/decide$`), who: (p) => p.kind === "approver", run: (ctx, [id]) => decide(ctx, id!) },
];
