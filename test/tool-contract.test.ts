import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";

afterAll(cleanupHomes);

const CHANNEL_TOOLS: Record<string, string[]> = {
  email: ["send_email", "list_messages", "read_message"],
  sms: ["send_sms", "list_messages", "read_message"],
  voice: ["place_call"],
  vault: ["vault_get"],
  card: ["card_charge", "create_payment_mandate", "present_payment_mandate"],
  sign: ["sign_http_request"],
};

describe("what each surface lists", () => {
  it.each(Object.keys(CHANNEL_TOOLS))("an identity with only the %s channel lists whoami and exactly that channel's tools", async (channel) => {
    const home = makeHome();
    const a = home.createIdentity({ channels: channel });
    const { client } = await stdioClient(home, a.token);
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(["whoami", ...CHANNEL_TOOLS[channel]!].sort());
    await client.close();
  });

  it("the published definitions of every tool match the reviewed snapshot (a change to what the model sees is a diff)", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email,sms,voice,vault,card,sign" });
    const agent = await stdioClient(home, a.token);
    const admin = await stdioClient(home, home.adminToken);
    const approver = await stdioClient(home, home.addApprover().token);
    const agentTools = (await agent.client.listTools()).tools;
    const adminTools = (await admin.client.listTools()).tools;
    const approverTools = (await approver.client.listTools()).tools;
    await agent.client.close();
    await admin.client.close();
    await approver.client.close();
    expect(agentTools.map((t) => t.name).sort()).toEqual(["whoami", ...new Set(Object.values(CHANNEL_TOOLS).flat())].sort());
    expect(approverTools.map((t) => t.name)).toEqual(["list_approvals", "decide_approval"]);
    for (const t of [...agentTools, ...adminTools, ...approverTools]) {
      expect(t.inputSchema.additionalProperties, t.name).toBe(false);
      expect(t.description!.length, t.name).toBeGreaterThan(20);
      expect(t.outputSchema, t.name).toBeTruthy();
    }
    await expect(JSON.stringify({ agent: agentTools, admin: adminTools, approver: approverTools }, null, 2) + "\n").toMatchFileSnapshot("__snapshots__/tools.json");
  });

  it("what the model's context holds is small: the agent's tools/list (all channels, 11 tools) ≤ 14.5 KB, the admin list ≤ 16 KB (17 tools: about 950 bytes each, as when it had 13 in 12 KB), without losing argument descriptions, the denied: convention or structured output", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email,sms,voice,vault,card,sign", phone: "+14155550100" });
    const agent = await stdioClient(home, a.token);
    const admin = await stdioClient(home, home.adminToken);
    const agentList = await agent.client.listTools();
    const adminList = await admin.client.listTools();
    const bytes = (x: unknown) => Buffer.byteLength(JSON.stringify(x));
    expect(agentList.tools).toHaveLength(11);
    // 14 KB until present_payment_mandate took a Verifiable Intent L2 (+ about 350 bytes).
    expect(bytes(agentList)).toBeLessThanOrEqual(14.5 * 1024);
    expect(bytes(adminList)).toBeLessThanOrEqual(16 * 1024);
    for (const t of [...agentList.tools, ...adminList.tools]) {
      for (const [arg, schema] of Object.entries<any>(t.inputSchema.properties ?? {})) expect(schema.description ?? "", `${t.name}.${arg}`).toMatch(/\w{2,}/);
      expect(t.outputSchema?.type, t.name).toBe("object");
      expect(Object.keys(t.outputSchema?.properties ?? {}).length, t.name).toBeGreaterThan(0);
    }
    for (const t of agentList.tools) {
      expect(t.outputSchema!.properties, t.name).toHaveProperty("receipt");
      if (t.name !== "whoami") expect(t.description, t.name).toContain("`denied: <code>: <why>`");
    }
    // The published output schemas still hold what sigil returns: the SDK client checks each
    // structuredContent against the listed outputSchema and would throw here.
    const who = await agent.client.callTool({ name: "whoami", arguments: {} });
    expect((who.structuredContent as any).receipt.identityId).toBe(a.id);
    const listed = await admin.client.callTool({ name: "list_identities", arguments: {} });
    expect(listed.isError).toBeFalsy();
    await agent.client.close();
    await admin.client.close();
  });

  it("one vocabulary: the admin tools take policy (policies, the older name, still works; both at once is refused), and the CLI and list_identities list identities of one shape", async () => {
    const home = makeHome();
    const admin = await stdioClient(home, home.adminToken);
    const call = async (name: string, args: Record<string, unknown>) => (await admin.client.callTool({ name, arguments: args })) as any;
    const created = await call("create_identity", { name: "new-name", channels: ["email"], policy: { allowedDomains: ["example.com"] } });
    expect(created.isError, text(created)).toBeFalsy();
    const id = created.structuredContent.id;
    const old = await call("create_identity", { name: "old-name", channels: ["email"], policies: { allowedDomains: ["example.org"] } });
    expect(old.isError, text(old)).toBeFalsy();
    const both = await call("create_identity", { name: "both", channels: [], policy: {}, policies: {} });
    expect(text(both)).toMatch(/^denied: invalid_arguments: .*give the policy document once, as policy/);
    expect((await call("update_policy", { identityId: id, policy: { allowedDomains: ["example.net"] } })).structuredContent.policy).toEqual({ allowedDomains: ["example.net"] });
    expect((await call("update_policy", { identityId: id, policies: { allowedDomains: ["example.com"] } })).structuredContent.policy).toEqual({ allowedDomains: ["example.com"] });
    expect(text(await call("update_policy", { identityId: id }))).toMatch(/^denied: invalid_arguments: .*give the new policy document once, as policy/);
    expect(home.json(["identity", "show", old.structuredContent.id]).policy).toEqual({ allowedDomains: ["example.org"] });
    // Lists: the CLI prints the array, list_identities wraps the same array in {identities}
    // (MCP structured content is an object); each element is the same document.
    const listed = (await call("list_identities", {})).structuredContent.identities;
    expect(home.json(["identity", "list"])).toEqual(listed);
    expect(listed.map((i: any) => i.name).sort()).toEqual(["new-name", "old-name"]);
    await admin.client.close();
  });

  it("the README's tool table states each agent tool's annotations as the tool declares them", async () => {
    const { readFileSync } = await import("node:fs");
    const { AGENT_TOOLS } = await import("../dist/tools/index.js");
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const rows = new Map<string, string>();
    for (const line of readme.split("\n")) {
      const m = /^\| `([a-z_]+)` \| [^|]+ \| .* \| ([a-z ,-]+) \| [^|]+ \|$/.exec(line);
      if (m) rows.set(m[1]!, m[2]!.trim());
    }
    for (const t of AGENT_TOOLS as Array<{ name: string; annotations: Record<string, boolean> }>) {
      const a = t.annotations;
      const stated = [a.readOnlyHint && "read-only", a.destructiveHint && "destructive", a.idempotentHint && "idempotent", a.openWorldHint && "open world"].filter(Boolean).join(", ");
      expect(rows.get(t.name), t.name).toBe(stated);
    }
    // sign_http_request signs requests the agent sends to the open web.
    expect(rows.get("sign_http_request")).toBe("open world");
  });

  it("the tools a policy's rateLimits may name are exactly the agent tools", async () => {
    const { AGENT_TOOL_NAMES } = await import("../dist/src/policy/schema.js");
    const { AGENT_TOOLS } = await import("../dist/tools/index.js");
    expect([...AGENT_TOOL_NAMES].sort()).toEqual(AGENT_TOOLS.map((t: { name: string }) => t.name).sort());
  });
});
