/** The console's one layout: header with navigation for the signed-in principal, notices, the page. */
import { type Html, frag, html } from "./html.js";
import type { ConsolePrincipal, ConsoleSession } from "./session.js";

export interface PageOptions {
  title: string;
  /** The signed-in session (absent: the sign-in page). */
  session?: ConsoleSession;
  csrf?: string;
  /** Which navigation entry is current. */
  section?: "identities" | "audit" | "approvals" | "tenants" | "passkeys";
  body: Html;
  /** Extra scripts of this origin (e.g. the passkey ceremony). */
  scripts?: string[];
}

function who(p: ConsolePrincipal): string {
  if (p.kind === "approver") return `approver ${p.approverId} (tenant ${p.tenantId})`;
  return p.tenantId === undefined ? "root admin" : `admin of tenant ${p.tenantId}`;
}

function nav(p: ConsolePrincipal, section: PageOptions["section"]): Html {
  const items: Array<[NonNullable<PageOptions["section"]>, string, string]> =
    p.kind === "approver"
      ? [
          ["approvals", "/console/approvals", "Approvals"],
          ["passkeys", "/console/passkeys", "Passkeys"],
        ]
      : [
          ["identities", "/console/identities", "Identities"],
          ["audit", "/console/audit", "Audit"],
          ["approvals", "/console/approvals", "Approvals"],
          ...(p.tenantId === undefined ? ([["tenants", "/console/tenants", "Tenants"]] as Array<[NonNullable<PageOptions["section"]>, string, string]>) : []),
        ];
  return frag(html`<nav aria-label="Console">${items.map(([key, href, label]) => frag(html`<a href="${href}"${key === section ? frag(html` aria-current="page"`) : ""}>${label}</a>`))}</nav>`);
}

export function page(o: PageOptions): string {
  const s = o.session;
  const notice = s?.notice;
  if (s) delete s.notice; // shown once
  return String(
    frag(html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · sigil console</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
${(o.scripts ?? []).map((src) => frag(html`<script src="${src}" defer></script>`))}
</head>
<body>
<header>
<span class="brand">sigil console</span>
${s ? nav(s.principal, o.section) : ""}
${s && o.csrf
  ? frag(html`<span class="who">${who(s.principal)}${s.via === "passkey" ? " · passkey" : ""}
<form class="inline" method="post" action="/console/sign-out"><input type="hidden" name="csrf" value="${o.csrf}"><button type="submit">Sign out</button></form></span>`)
  : ""}
</header>
<main>
${notice ? frag(html`<p class="notice ${notice.kind}" role="${notice.kind === "error" ? "alert" : "status"}">${notice.text}</p>`) : ""}
${o.body}
</main>
</body>
</html>
`),
  );
}
