/** RFC 8785 JSON Canonicalization Scheme, via the reference implementation (`canonicalize`). */
import { createRequire } from "node:module";

const serialize = createRequire(import.meta.url)("canonicalize") as (input: unknown) => string | undefined;

export function jcs(value: unknown): string {
  const text = serialize(value);
  if (text === undefined) throw new Error("value cannot be canonicalised");
  return text;
}
