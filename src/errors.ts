/**
 * Errors with two faces: a public message that is safe to show a model (what was refused and why,
 * a reference id) and an internal cause for the operator's log on stderr.
 */
import { randomBytes } from "node:crypto";

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

/** Logs an internal error to stderr (never stdout: stdio is the MCP channel) with its reference. */
export function logInternal(ref: string, context: string, err: unknown): void {
  const detail = err instanceof Error ? `${err.name}: ${err.message}${err.cause ? ` (cause: ${String((err.cause as Error)?.message ?? err.cause)})` : ""}` : String(err);
  process.stderr.write(`sigil: ${ref} ${context}: ${detail}\n`);
}

/** One line of safe text: control characters removed, bounded length. */
export function safeText(s: string, max = 200): string {
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]/g, " ");
  return clean.length > max ? clean.slice(0, max - 1) + "…" : clean;
}
