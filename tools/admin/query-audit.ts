import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN_READ, identityId } from "./schemas.js";

export const queryAudit = defineAdminTool({
  name: "query_audit",
  title: "Query audit log",
  description: "Returns an identity's audit entries: the latest `limit` (default 50, at most 1000), or those after seq `since`.",
  annotations: ADMIN_READ,
  input: z.strictObject({
    identityId,
    limit: z.int().min(1).max(1000).optional().describe("How many entries"),
    since: z.int().min(0).optional().describe("Only entries with a seq greater than this"),
  }),
  output: z.object({ identityId: z.string(), entries: z.array(z.record(z.string(), z.unknown())) }),
  run: async ({ audit }, a) => ({
    identityId: a.identityId,
    entries: (await audit.query(a.identityId, { limit: a.limit, since: a.since })) as Array<Record<string, unknown>>,
  }),
});
