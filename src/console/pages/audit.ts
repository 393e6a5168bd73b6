/**
 * The audit pages: every identity's chain with its verification status, and one identity's
 * entries newest first — the page's lines read backwards from the log's end (the store's
 * `linesBefore`: one read), so a page costs the same at 100 entries and at 1,000,000 — filtered by
 * tool and decision, with the bundle export (`sigil audit export`) and a signed checkpoint
 * (`sigil audit checkpoint`) to download.
 *
 * The status is the chains' own (`AuditChains.verification`, src/audit/verification.ts): a page
 * reads it and computes nothing; verifications run on a verifier thread, and the console's script
 * asks for statuses still moving every two seconds. A log is never shown verified beyond what was
 * verified: entries appended since are "pending", a failure stays until a full pass succeeds.
 */
import { makeCheckpoint } from "../../provenance/checkpoint.js";
import type { VerificationStatus } from "../../audit/verification.js";
import type { ChainCursor } from "../../../store/types.js";
import { type Html, frag, html } from "../html.js";
import { SECURITY_HEADERS, redirect } from "../http-util.js";
import { type Ctx, type Route, isAdmin } from "../routes.js";
import { adminCall, adminOps, identityPage, sentence } from "../ops.js";
import { PAGE_SIZE, pageNumber, pager, postButton, render, when } from "./common.js";

const ID = "(id_[0-9a-f]{20})";
/** A filtered page stops reading after this long and links to where it stopped (server time stays bounded). */
const SCAN_BUDGET_MS = 30;
/** Lines read at a time by a filtered page. */
const SCAN_PAGE = 200;

/** The chip's `data-state`: the console's script refreshes `verifying` and `pending` ones. */
function chipState(s: VerificationStatus): string {
  return s.state === "verified" ? "ok" : s.state === "unverified" ? "verifying" : s.state;
}

function statusChip(id: string, s: VerificationStatus): Html {
  const text =
    s.state === "unverified"
      ? "verifying…"
      : s.state === "verified"
        ? `verified: ${s.verifiedSeq} entries`
        : s.state === "pending"
          ? `verified up to entry ${s.verifiedSeq}; ${s.entries - s.verifiedSeq} newer pending`
          : `FAILS verification${s.firstBadSeq !== undefined ? ` at seq ${s.firstBadSeq}` : ""}${s.error ? `: ${s.error}` : ""}`;
  const cls = s.state === "verified" ? "ok" : s.state === "failed" ? "bad" : "";
  const title = s.fullAt !== undefined ? `whole log last verified ${new Date(s.fullAt).toISOString()}` : "";
  return frag(html`<span class="chip ${cls}" data-chain-status="${id}" data-state="${chipState(s)}" title="${title}">${text}</span>`);
}

async function indexPage(ctx: Ctx): Promise<void> {
  const t0 = performance.now();
  const pageNo = pageNumber(ctx.url);
  const { rows, total, hasNext } = await identityPage(ctx, pageNo, PAGE_SIZE);
  const verification = ctx.app.chains.verification;
  const cells = rows.map((v) => {
    const s = verification.status(v.id);
    return frag(html`<tr><td><a href="/console/audit/${v.id}">${v.name}</a></td><td class="mono">${v.id}</td><td>${s.entries > 0 ? s.entries : "—"}</td><td>${statusChip(v.id, s)}</td></tr>`);
  });
  ctx.res.setHeader("server-timing", `audit;dur=${(performance.now() - t0).toFixed(1)}`);
  render(ctx, {
    title: "Audit",
    section: "audit",
    body: frag(html`<h1>Audit logs</h1>
<p class="muted">Each identity's chain, verified in the background (every signature and link, as <code>sigil audit verify</code> does; the whole log again every 5 minutes while it is looked at, new entries as they come); the status refreshes by itself.</p>
${pager(ctx.url, pageNo, hasNext, total)}
<table><thead><tr><th>Identity</th><th>Id</th><th>Entries</th><th>Verification</th></tr></thead><tbody>${cells}</tbody></table>
${pager(ctx.url, pageNo, hasNext, total)}`),
  });
}

const DECISIONS = ["allow", "deny", "ok", "failed", "unknown", "pending", "approved", "denied"];

async function timelinePage(ctx: Ctx, id: string): Promise<void> {
  const t0 = performance.now();
  const who = await adminCall(ctx, "get_identity", { identityId: id });
  if (!who.ok) return render(ctx, { title: "Not found", section: "audit", body: frag(html`<h1>Not found</h1><p class="notice error">${sentence(who)}</p>`) }, 404);
  const tool = (ctx.url.searchParams.get("tool") ?? "").slice(0, 64);
  const decision = (ctx.url.searchParams.get("decision") ?? "").slice(0, 16);
  const before = Number(ctx.url.searchParams.get("before") ?? "NaN");
  const backend = ctx.app.store.audit;
  const filtered = tool !== "" || decision !== "";
  let cursor: ChainCursor | undefined = Number.isSafeInteger(before) && before > 0 ? { position: before } : undefined;
  const entries: Array<Record<string, any>> = [];
  let newest: number | undefined;
  let more = false;
  let stoppedEarly = false;
  if (backend.linesBefore) {
    for (;;) {
      const page = await backend.linesBefore(id, cursor, filtered ? SCAN_PAGE : PAGE_SIZE);
      for (const { line, before: at } of page) {
        let e: Record<string, any>;
        try {
          e = JSON.parse(line) as Record<string, any>;
        } catch {
          e = { seq: "?", tool: "(unreadable line)", decision: "" };
        }
        if (cursor === undefined && newest === undefined && typeof e.seq === "number") newest = e.seq;
        cursor = at;
        if (tool && e.tool !== tool) continue;
        if (decision && e.decision !== decision) continue;
        entries.push(e);
        if (entries.length >= PAGE_SIZE) break;
      }
      if (page.length === 0 || cursor === undefined || cursor.position <= 0) break;
      if (entries.length >= PAGE_SIZE) {
        more = true;
        break;
      }
      if (!filtered) break;
      if (performance.now() - t0 > SCAN_BUDGET_MS) {
        more = stoppedEarly = true;
        break;
      }
    }
    // An older page: the log's length for the header is its newest line's seq (one more read of one line).
    if (newest === undefined && Number.isSafeInteger(before)) {
      const top = (await backend.linesBefore(id, undefined, 1))[0];
      try {
        const seq = top ? (JSON.parse(top.line) as { seq?: unknown }).seq : undefined;
        if (typeof seq === "number") newest = seq;
      } catch {
        /* an unreadable last line: the header uses the status's count */
      }
    }
  }
  const older = new URLSearchParams({ ...(tool ? { tool } : {}), ...(decision ? { decision } : {}), before: String(cursor?.position ?? 0) });
  const verification = ctx.app.chains.verification;
  const status = ctx.url.searchParams.get("verify") === "1" ? verification.verifyNow(id) : verification.status(id, newest);
  ctx.res.setHeader("server-timing", `timeline;dur=${(performance.now() - t0).toFixed(1)}`);
  const tools = ["whoami", "send_email", "send_sms", "place_call", "vault_get", "card_charge", "sign_http_request", "approval_requested", "approval_decided", "policy_updated", "key_rotated", "token_rotated", "identity_revoked", "identity_created", "record_check"];
  render(ctx, {
    title: `Audit: ${who.value.name}`,
    section: "audit",
    body: frag(html`<p><a href="/console/audit">← Audit logs</a> · <a href="/console/identities/${id}">identity</a></p>
<h1>Audit log of ${who.value.name} <span class="mono muted">${id}</span></h1>
<p>${newest ?? status.entries} entries · ${statusChip(id, status)} ${postButton(ctx, `/console/audit/${id}/verify`, "Verify again")}</p>
<p class="row"><a href="/console/audit/${id}/bundle" download>Export bundle (JSON)</a> <a href="/console/audit/${id}/checkpoint" download>Signed checkpoint</a></p>
<form method="get" action="/console/audit/${id}" class="row">
<div><label for="tool">Tool</label><select id="tool" name="tool" data-autosubmit><option value="">any</option>${tools.map((t) => frag(html`<option${t === tool ? frag(html` selected`) : ""}>${t}</option>`))}</select></div>
<div><label for="decision">Decision</label><select id="decision" name="decision" data-autosubmit><option value="">any</option>${DECISIONS.map((d) => frag(html`<option${d === decision ? frag(html` selected`) : ""}>${d}</option>`))}</select></div>
<button type="submit">Filter</button>
</form>
<table><thead><tr><th>Seq</th><th>Time</th><th>Tool</th><th>Phase</th><th>Decision</th><th>Reason</th><th>Session</th><th>Key</th></tr></thead><tbody>
${entries.length === 0 ? frag(html`<tr><td colspan="8" class="muted">No entries${tool || decision ? " match here" : ""}.</td></tr>`) : ""}
${entries.map(
  (e) => frag(html`<tr><td>${String(e.seq)}</td><td>${typeof e.ts === "string" ? when(e.ts) : ""}</td><td>${String(e.tool ?? "")}</td><td>${String(e.phase ?? "")}</td><td>${String(e.decision ?? "")}</td><td>${String(e.reason ?? "")}</td><td class="mono">${String(e.session ?? "").slice(0, 20)}</td><td class="mono">${String(e.keyId ?? "").slice(0, 12)}</td></tr>`),
)}
</tbody></table>
${more ? frag(html`<nav class="pager"><a href="/console/audit/${id}?${older.toString()}" rel="next">Older entries →</a>${stoppedEarly ? frag(html`<span class="muted">(searched part of the log; continue for older matches)</span>`) : ""}</nav>`) : ""}`),
  });
}

async function download(ctx: Ctx, id: string, kind: "bundle" | "checkpoint"): Promise<void> {
  const who = await adminCall(ctx, "get_identity", { identityId: id }); // scoped: another tenant's is not found
  if (!who.ok) return render(ctx, { title: "Not found", section: "audit", body: frag(html`<h1>Not found</h1><p class="notice error">${sentence(who)}</p>`) }, 404);
  const body = kind === "bundle" ? JSON.stringify(await ctx.app.audit.exportBundle(id), null, 2) + "\n" : (await makeCheckpoint(ctx.app, id)).note;
  ctx.res.writeHead(200, {
    ...SECURITY_HEADERS,
    "content-type": kind === "bundle" ? "application/json" : "text/plain; charset=utf-8",
    "content-disposition": `attachment; filename="${id}.${kind === "bundle" ? "bundle.json" : "checkpoint.txt"}"`,
  });
  ctx.res.end(body);
}

/** `GET /console/audit/status?ids=a,b`: the statuses shown on a page, for the script that refreshes them. */
async function statusJson(ctx: Ctx): Promise<void> {
  const ids = (ctx.url.searchParams.get("ids") ?? "").split(",").filter((x) => /^id_[0-9a-f]{20}$/.test(x)).slice(0, PAGE_SIZE);
  const out: Record<string, { state: string; html: string }> = {};
  const ops = adminOps(ctx);
  for (const id of ids) {
    const visible = await ops.identities.show(id).then(() => true, () => false);
    if (!visible) continue;
    const s = ctx.app.chains.verification.status(id);
    out[id] = { state: chipState(s), html: String(statusChip(id, s)) };
  }
  ctx.res.writeHead(200, { ...SECURITY_HEADERS, "content-type": "application/json" });
  ctx.res.end(JSON.stringify(out));
}

export const auditRoutes: Route[] = [
  { method: "GET", path: /^\/console\/audit$/, who: isAdmin, run: indexPage },
  { method: "GET", path: /^\/console\/audit\/status$/, who: isAdmin, run: statusJson },
  { method: "GET", path: new RegExp(`^/console/audit/${ID}$`), who: isAdmin, run: (ctx, [id]) => timelinePage(ctx, id!) },
  {
    method: "POST",
    path: new RegExp(`^/console/audit/${ID}/verify$`),
    who: isAdmin,
    run: async (ctx, [id]) => redirect(ctx.res, `/console/audit/${id}?verify=1`),
  },
  { method: "GET", path: new RegExp(`^/console/audit/${ID}/bundle$`), who: isAdmin, run: (ctx, [id]) => download(ctx, id!, "bundle") },
  { method: "GET", path: new RegExp(`^/console/audit/${ID}/checkpoint$`), who: isAdmin, run: (ctx, [id]) => download(ctx, id!, "checkpoint") },
];
