/** Pieces the console's pages share: paging, field errors, forms, a line diff. */
import { type Html, frag, html } from "../html.js";
import { page, type PageOptions } from "../layout.js";
import { send } from "../http-util.js";
import type { Ctx } from "../routes.js";

export const PAGE_SIZE = 50;

/** Renders a full page for the signed-in session. */
export function render(ctx: Ctx, o: Omit<PageOptions, "session" | "csrf">, status = 200): void {
  send(ctx.res, status, page({ ...o, session: ctx.session, csrf: ctx.csrf }));
}

/** The hidden CSRF field every form carries. */
export const csrfField = (ctx: Ctx): Html => frag(html`<input type="hidden" name="csrf" value="${ctx.csrf}">`);

/** A one-button POST form (with a confirmation when given). */
export function postButton(ctx: Ctx, action: string, label: string, opts: { confirm?: string; cls?: string; fields?: Record<string, string> } = {}): Html {
  return frag(html`<form class="inline" method="post" action="${action}"${opts.confirm ? frag(html` data-confirm="${opts.confirm}"`) : ""}>${csrfField(ctx)}${Object.entries(opts.fields ?? {}).map(([k, v]) => frag(html`<input type="hidden" name="${k}" value="${v}">`))}<button type="submit"${opts.cls ? frag(html` class="${opts.cls}"`) : ""}>${label}</button></form>`);
}

export function fieldError(errors: Record<string, string>, field: string): Html | "" {
  const e = errors[field];
  return e ? frag(html`<p class="field-error" id="${field}-error" role="alert">${e}</p>`) : "";
}

/** A positive page number from the query (1 when absent or malformed). */
export function pageNumber(url: URL): number {
  const n = Number(url.searchParams.get("page") ?? "1");
  return Number.isSafeInteger(n) && n >= 1 && n <= 1_000_000 ? n : 1;
}

/** Previous / next links keeping the other query parameters. */
export function pager(url: URL, pageNo: number, hasNext: boolean, total?: number): Html {
  const link = (n: number): string => {
    const q = new URLSearchParams(url.searchParams);
    q.set("page", String(n));
    return `${url.pathname}?${q.toString()}`;
  };
  return frag(html`<nav class="pager" aria-label="Pages">${pageNo > 1 ? frag(html`<a href="${link(pageNo - 1)}" rel="prev">← Previous</a>`) : ""}<span class="muted">page ${pageNo}${total !== undefined ? ` of ${Math.max(1, Math.ceil(total / PAGE_SIZE))} (${total})` : ""}</span>${hasNext ? frag(html`<a href="${link(pageNo + 1)}" rel="next">Next →</a>`) : ""}</nav>`);
}

export const pretty = (v: unknown): string => JSON.stringify(v, null, 2) ?? "";

/** JSON with object keys sorted at every level (a stable text to diff). */
export function sortedJson(v: unknown): string {
  const sort = (x: unknown): unknown =>
    Array.isArray(x) ? x.map(sort) : x && typeof x === "object" ? Object.fromEntries(Object.keys(x as object).sort().map((k) => [k, sort((x as Record<string, unknown>)[k])])) : x;
  return JSON.stringify(sort(v), null, 2) ?? "";
}

/**
 * A line diff (longest common subsequence; policy documents are small — at most a few hundred
 * lines — so the quadratic table is fine): each line kept, removed or added.
 */
export function lineDiff(before: string, after: string): Array<{ op: " " | "-" | "+"; line: string }> {
  const a = before.split("\n");
  const b = after.split("\n");
  if (a.length * b.length > 4_000_000) return [...a.map((line) => ({ op: "-" as const, line })), ...b.map((line) => ({ op: "+" as const, line }))];
  const m = a.length;
  const n = b.length;
  const lcs = Array.from({ length: m + 1 }, () => new Uint32Array(n + 1));
  for (let i = m - 1; i >= 0; i--) for (let j = n - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const out: Array<{ op: " " | "-" | "+"; line: string }> = [];
  let i = 0;
  let j = 0;
  while (i < m && j < n) {
    if (a[i] === b[j]) out.push({ op: " ", line: a[i++]! }), j++;
    else if (lcs[i + 1]![j]! >= lcs[i]![j + 1]!) out.push({ op: "-", line: a[i++]! });
    else out.push({ op: "+", line: b[j++]! });
  }
  while (i < m) out.push({ op: "-", line: a[i++]! });
  while (j < n) out.push({ op: "+", line: b[j++]! });
  return out;
}

export function diffView(d: Array<{ op: " " | "-" | "+"; line: string }>): Html {
  return frag(html`<pre class="diff" aria-label="Changes">${d.map((x) => (x.op === "-" ? frag(html`<del>- ${x.line}</del>`) : x.op === "+" ? frag(html`<ins>+ ${x.line}</ins>`) : frag(html`<span>  ${x.line}</span>`)))}</pre>`);
}

export const when = (iso: string | undefined): string => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");
