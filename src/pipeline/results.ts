/**
 * What a tool call answers, for the agent and the admin surface alike. One refusal model: a
 * refusal (by policy, by the pipeline, or a `Denied` thrown by an operation) reads
 * `denied: <reason_code>: <sentence>`; any other failure `error: <code>: <sentence>` with a
 * reference id when the detail went to the operator's log. Nothing raw (stack, path, secret)
 * reaches the caller.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { Denied, SigilError, logInternal, refId, safeText } from "../errors.js";

export function deniedResult(reason: string, message: string): CallToolResult {
  return { isError: true, content: [{ type: "text", text: `denied: ${reason}: ${safeText(message)}` }] };
}

export function errorResult(code: string, message: string, max = 300): CallToolResult {
  return { isError: true, content: [{ type: "text", text: `error: ${code}: ${safeText(message, max)}` }] };
}

/** Validation errors without echoing values: which field, what was wrong. */
export function describeIssues(err: { issues: Array<{ path: PropertyKey[]; message: string; code?: string; keys?: string[] }> }): string {
  const first = err.issues[0];
  if (!first) return "the arguments are invalid.";
  const where = first.path.length ? first.path.map(String).join(".") : "arguments";
  if (first.code === "unrecognized_keys" && first.keys) return `unknown argument(s): ${first.keys.slice(0, 5).join(", ")}.`;
  return `${where}: ${first.message}`;
}

/**
 * An operation's exception as a result: `Denied` is a refusal; another SigilError is an error with
 * its own safe sentence; anything else is logged with a reference and answered as internal_error.
 */
export function failureResult(err: unknown, context: string, internalMessage: string): CallToolResult {
  if (err instanceof Denied) return deniedResult(err.code, err.publicMessage);
  if (err instanceof SigilError) return errorResult(err.code, err.publicMessage, 200);
  const ref = refId();
  logInternal(ref, context, err);
  return errorResult("internal_error", `${internalMessage} (${ref}).`);
}
