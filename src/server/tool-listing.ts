/**
 * What `tools/list` publishes for a tool: name, title, description, input and output JSON Schemas
 * and annotations — kept small, because every byte of it sits in the agent's context on every turn.
 *
 * - Input schemas are published in full (types, limits, patterns and each argument's description):
 *   they are what a model needs to call the tool right.
 * - Output schemas keep the structure a client validates `structuredContent` against (every
 *   field, its type and enum values) but not the per-field prose, limits, `required` or
 *   `additionalProperties` (sigil builds its results itself), and the audit receipt every
 *   result carries is published as a plain `receipt` object instead of its full schema in every
 *   tool (its fields are in the README and in every result).
 * - No `$schema` key (draft-07 keywords only; MCP's default dialect reads them the same).
 * - Annotations list only the hints that differ from MCP's defaults (read-only: false,
 *   destructive: true, idempotent: false, open-world: true); a client reads the rest as defaults.
 * Built once per tool and cached: listing costs no schema conversion per session.
 */
import * as z from "zod";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { AdminTool, AgentTool, ApproverTool } from "../pipeline/tool.js";

/** The published form of every result's `receipt` (the signed audit entry that records it). */
export const RECEIPT_JSON_SCHEMA = { type: "object" } as const;

/** MCP's defaults for the tool hints: a hint equal to its default is not repeated in every listing. */
const HINT_DEFAULTS = { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true } as const;

/** The hints that differ from MCP's defaults (with the defaults applied, a client reads the tool's own). */
export function publishedAnnotations(a: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(a).filter(([k, v]) => HINT_DEFAULTS[k as keyof typeof HINT_DEFAULTS] !== v));
}

type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: "input" | "output"): Json {
  const s = z.toJSONSchema(schema, { target: "draft-7", io }) as Json;
  delete s.$schema;
  return s;
}

/** What an output schema keeps below its top level: its structure, not its prose or input-style limits. */
const OUTPUT_KEEPS = new Set(["type", "enum", "const", "items", "properties", "anyOf"]);

/** Drops prose and limits from an output schema (recursively), keeping its structure; `receipt` becomes RECEIPT_JSON_SCHEMA. */
function compactOutput(s: Json, top = true): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(s)) {
    if (!OUTPUT_KEEPS.has(k) && !(top && k === "description")) continue;
    if (k === "properties" && v && typeof v === "object") {
      out.properties = Object.fromEntries(
        Object.entries(v as Record<string, Json>).map(([name, p]) => [name, top && name === "receipt" ? RECEIPT_JSON_SCHEMA : compactOutput(p, false)]),
      );
    } else if (k === "items" && v && typeof v === "object" && !Array.isArray(v)) {
      out.items = compactOutput(v as Json, false);
    } else {
      out[k] = v;
    }
  }
  return out;
}

const cache = new WeakMap<object, Tool>();

export function publishedTool(t: AgentTool | AdminTool | ApproverTool): Tool {
  let tool = cache.get(t);
  if (!tool) {
    tool = {
      name: t.name,
      title: t.title,
      description: t.description,
      inputSchema: jsonSchema(t.input, "input") as Tool["inputSchema"],
      outputSchema: compactOutput(jsonSchema(t.output, "output")) as Tool["outputSchema"],
      annotations: publishedAnnotations(t.annotations as Record<string, unknown>) as Tool["annotations"],
    };
    cache.set(t, tool);
  }
  return tool;
}

/** The JSON size, in bytes, of a tools/list result with these tools (what a client puts in the model's context). */
export function listingBytes(tools: Array<AgentTool | AdminTool>): number {
  return Buffer.byteLength(JSON.stringify({ tools: tools.map(publishedTool) }), "utf8");
}
