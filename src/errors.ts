/**
 * Errors with two faces: a public message that is safe to show a model (what was refused and why,
 * a reference id) and an internal cause for the operator's log on stderr.
 */
import { randomBytes } from "node:crypto";
import { shown } from "./util/printable.js";

export class SigilError extends Error {
  constructor(
    /** Stable reason code, e.g. `not_found`, `invalid_arguments`, `audit_unavailable`. */
    readonly code: string,
    /** One safe sentence for the caller. */
    readonly publicMessage: string,
    options?: { cause?: unknown },
  ) {
    super(publicMessage, options);
  }
}

/** A refusal by policy or by the pipeline: reported as `denied: <code>: <sentence>`. */
export class Denied extends SigilError {}

export function refId(): string {
  return "ref_" + randomBytes(6).toString("hex");
}

/**
 * Logs an internal error to stderr (never stdout: stdio is the MCP channel) with its reference.
 * `scrub` removes values that must not reach the log (a provider's error text may echo the message
 * body it refused).
 */
export function logInternal(ref: string, context: string, err: unknown, scrub?: (s: string) => string): void {
  const detail = err instanceof Error ? `${err.name}: ${err.message}${err.cause ? ` (cause: ${String((err.cause as Error)?.message ?? err.cause)})` : ""}` : String(err);
  // One line, whatever the error text carries (control characters and terminal sequences escaped).
  process.stderr.write(`sigil: ${shown(`${ref} ${context}: ${scrub ? scrub(detail) : detail}`)}\n`);
}

/**
 * A scrubber for log text: any run of the text that shares 8 or more consecutive characters with one
 * of `values` is replaced by `[redacted]` (so a partial or truncated echo is caught too), and values
 * of 4 to 7 characters are replaced where they occur whole. Only the first 16 KiB of each value are
 * considered: what a remote error message echoes is its start.
 */
export function scrubberOf(values: Iterable<string>): (s: string) => string {
  const K = 8;
  const windows = new Set<string>();
  const short: string[] = [];
  for (const v of new Set(values)) {
    if (v.length < 4) continue;
    if (v.length < K) short.push(v);
    const head = v.slice(0, 16 * 1024);
    for (let i = 0; i + K <= head.length; i++) windows.add(head.slice(i, i + K));
  }
  if (windows.size === 0 && short.length === 0) return (s) => s;
  return (s) => {
    const hit = new Uint8Array(s.length);
    for (let i = 0; i + K <= s.length; i++) if (windows.has(s.slice(i, i + K))) hit.fill(1, i, i + K);
    let out = "";
    for (let i = 0; i < s.length; ) {
      if (!hit[i]) {
        out += s[i++];
        continue;
      }
      while (i < s.length && hit[i]) i++;
      out += "[redacted]";
    }
    return short.reduce((acc, v) => acc.split(v).join("[redacted]"), out);
  };
}

/** One line of safe text: control characters removed, bounded length. */
export function safeText(s: string, max = 200): string {
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]/g, " ");
  return clean.length > max ? clean.slice(0, max - 1) + "…" : clean;
}
