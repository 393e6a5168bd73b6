/** Tenants (root admin only): the list, and creation (its admin token shown once) — `list_tenants`, `create_tenant`. */
import { frag, html } from "../html.js";
import { redirect } from "../http-util.js";
import { type Ctx, type Route, isRoot } from "../routes.js";
import { adminCall, sentence } from "../ops.js";
import { csrfField, fieldError, render, when } from "./common.js";

async function tenantsPage(ctx: Ctx, errors: Record<string, string> = {}, name = "", status = 200): Promise<void> {
  const shown = ctx.sessions.takeOnce(ctx.session, ctx.url.searchParams.get("shown"));
  const r = await adminCall(ctx, "list_tenants", {});
  const tenants = r.ok ? (r.value.tenants as Array<{ id: string; name: string; keyId?: string; createdAt?: string }>) : [];
  render(
    ctx,
    {
      title: "Tenants",
      section: "tenants",
      body: frag(html`<h1>Tenants</h1>
${shown ? frag(html`<div class="notice ok" role="status"><p><strong>${shown.label} (shown once; it is not stored and will not be shown again):</strong></p><p class="secret" id="shown-token" data-copy>${shown.token}</p></div>`) : ""}
<table><thead><tr><th>Name</th><th>Id</th><th>Key</th><th>Created</th></tr></thead><tbody>
${tenants.map((t) => frag(html`<tr><td>${t.name}</td><td class="mono">${t.id}</td><td class="mono">${t.keyId ?? ""}</td><td>${when(t.createdAt)}</td></tr>`))}
</tbody></table>
<h2>Create a tenant</h2>
<form method="post" action="/console/tenants">
${csrfField(ctx)}
<label for="tenant-name">Name</label><input type="text" id="tenant-name" name="name" value="${name}" required maxlength="64">${fieldError(errors, "name")}
<p><button type="submit" class="primary">Create tenant</button></p>
</form>`),
    },
    status,
  );
}

async function create(ctx: Ctx): Promise<void> {
  const name = (ctx.form!.get("name") ?? "").trim();
  const r = await adminCall(ctx, "create_tenant", { name });
  if (!r.ok) return tenantsPage(ctx, { name: sentence(r) }, name, 400);
  const once = ctx.sessions.keepOnce(ctx.session, { label: `Admin token of tenant ${r.value.name}`, token: r.value.adminToken });
  ctx.session.notice = { kind: "ok", text: `Created tenant ${r.value.name} (${r.value.id}).` };
  redirect(ctx.res, `/console/tenants?shown=${once}`);
}

export const tenantRoutes: Route[] = [
  { method: "GET", path: /^\/console\/tenants$/, who: isRoot, run: (ctx) => tenantsPage(ctx) },
  { method: "POST", path: /^\/console\/tenants$/, who: isRoot, run: create },
];
