/**
 * How the console acts: through the admin and approver tools, called exactly as MCP calls them
 * (src/pipeline/admin-call.ts, approver-call.ts) — the credential re-checked, the tool's strict
 * schema, a tenant admin's scope (src/tenant/scope.ts), the operation's own audit entries, the one
 * refusal model. The console is a third surface onto those operations, never a second path to the
 * store. Reads go through the same admin context (scoped for a tenant admin).
 */
import { callAdminTool } from "../pipeline/admin-call.js";
import { callApproverTool } from "../pipeline/approver-call.js";
import type { AdminContext } from "../pipeline/tool.js";
import type { IdentityView } from "../identity/records.js";
import { scopedAdmin } from "../tenant/scope.js";
import { ADMIN_TOOLS, APPROVER_TOOLS } from "../../tools/index.js";
import type { Ctx } from "./routes.js";

/** A tool's answer: its structured result, or the refusal / error sentence (`denied: code: …`). */
export type Outcome = { ok: true; value: Record<string, any> } | { ok: false; code: string; text: string };

function outcome(r: { isError?: boolean; structuredContent?: Record<string, unknown>; content?: unknown }): Outcome {
  if (!r.isError) return { ok: true, value: (r.structuredContent ?? {}) as Record<string, any> };
  const text = ((r.content as Array<{ text?: string }> | undefined)?.[0]?.text ?? "error: the operation failed.").trim();
  const m = /^(?:denied|error): ([a-z_]+): /.exec(text);
  return { ok: false, code: m?.[1] ?? "error", text };
}

/** Calls an admin tool as the signed-in admin. */
export async function adminCall(ctx: Ctx, name: string, args: Record<string, unknown>): Promise<Outcome> {
  const p = ctx.principal;
  if (p.kind !== "admin") return { ok: false, code: "tool_not_available", text: "denied: tool_not_available: admins only." };
  const tool = ADMIN_TOOLS.find((t) => t.name === name);
  const r = await callAdminTool(ctx.app.admin, { tokenHash: p.tokenHash, ...(p.tenantId !== undefined ? { tenantId: p.tenantId } : {}) }, tool, name, args);
  if (r.isError !== true && (name === "revoke_identity" || name === "rotate_token")) ctx.afterChange();
  if (r.isError !== true && (name === "create_identity" || name === "revoke_identity")) listChanged(ctx);
  return outcome(r);
}

/** Calls an approver tool as the signed-in approver. */
export async function approverCall(ctx: Ctx, name: string, args: Record<string, unknown>): Promise<Outcome> {
  const p = ctx.principal;
  if (p.kind !== "approver") return { ok: false, code: "tool_not_available", text: "denied: tool_not_available: approvers only." };
  const tool = APPROVER_TOOLS.find((t) => t.name === name);
  return outcome(await callApproverTool({ approvers: ctx.app.approvers, approvals: ctx.app.approvals }, p.approverId, p.tokenHash, tool, name, args));
}

/** The admin operations as the signed-in admin may read them (a tenant admin's narrowed to its tenant). */
export function adminOps(ctx: Ctx): AdminContext {
  const p = ctx.principal;
  if (p.kind !== "admin") throw new Error("adminOps: not an admin session");
  const a = ctx.app.admin;
  return p.tenantId === undefined ? a.ops : scopedAdmin(a.ops, a.store, p.tenantId, a.member);
}

/**
 * The list pages read: every identity's public view, read through the admin operations (records
 * MAC-checked) and kept for the console's pages. Reading 10,000 records costs far more than a page
 * may, so a page is served from the last read and never waits for a newer one: once the list is
 * older than a second — or ten times what the last read took, so refreshing costs at most about a
 * tenth of the server's time — a read starts in the background (the store and the MAC checks
 * yield to the event loop every few hundred records, so requests go on meanwhile). Only the first
 * read, and the read a change made here starts (so the change shows), are waited for. Each
 * identity's own page, and every change, reads the store afresh.
 */
interface KeptList {
  /** When the read began (ms, this process's clock). */
  at: number;
  /** How long the last completed read took (ms). */
  took: number;
  list: Promise<IdentityView[]>;
  refreshing?: boolean;
}
const lists = new WeakMap<object, KeptList>();

function readList(ctx: Ctx, took: number): KeptList {
  const at = Date.now();
  const kept: KeptList = { at, took, list: ctx.app.admin.ops.identities.list() };
  kept.list.then(
    () => (kept.took = Date.now() - at),
    () => {
      if (lists.get(ctx.app) === kept) lists.delete(ctx.app);
    },
  );
  return kept;
}

async function identityList(ctx: Ctx): Promise<{ list: IdentityView[]; at: number }> {
  let c = lists.get(ctx.app);
  if (!c) {
    c = readList(ctx, 0);
    lists.set(ctx.app, c);
  } else if (!c.refreshing && Date.now() - c.at > Math.max(1000, 10 * c.took)) {
    const cur = c;
    cur.refreshing = true;
    const next = readList(ctx, cur.took);
    next.list.then(
      () => lists.get(ctx.app) === cur && lists.set(ctx.app, next),
      () => (cur.refreshing = false),
    );
  }
  return { list: await c.list, at: c.at };
}

/** After a change made here: the list is read again now, and the next page waits for that read (the change shows). */
export function listChanged(ctx: Ctx): void {
  lists.set(ctx.app, readList(ctx, lists.get(ctx.app)?.took ?? 0));
}

/**
 * One page (newest first) of the identities the signed-in admin may see, matching `match`. A
 * tenant admin's list is its tenant's records, and each row shown is then read through its scope
 * (`show`: the record names the tenant AND the tenant's key vouches for it) — the same decision
 * `list_identities` makes for every identity, made only for the rows on the page, so a page costs
 * the same at 10 identities and at 10,000.
 */
export async function identityPage(ctx: Ctx, pageNo: number, pageSize: number, match: (v: IdentityView) => boolean = () => true): Promise<{ rows: IdentityView[]; total: number; hasNext: boolean; readAt: number }> {
  const p = ctx.principal;
  if (p.kind !== "admin") return { rows: [], total: 0, hasNext: false, readAt: Date.now() };
  const { list, at } = await identityList(ctx);
  const all = list.filter((v) => (p.tenantId === undefined || v.tenantId === p.tenantId) && match(v));
  const start = Math.max(0, all.length - pageNo * pageSize);
  const end = all.length - (pageNo - 1) * pageSize;
  let rows = end > 0 ? all.slice(start, end).reverse() : [];
  if (p.tenantId !== undefined) {
    const ops = adminOps(ctx);
    const shown: IdentityView[] = [];
    for (const v of rows) if (await ops.identities.show(v.id).then(() => true, () => false)) shown.push(v);
    rows = shown;
  }
  return { rows, total: all.length, hasNext: start > 0, readAt: at };
}

/** The sentence of a refusal without its `denied: code:` prefix. */
export const sentence = (o: { text: string }): string => o.text.replace(/^(?:denied|error): [a-z_]+: /, "");
