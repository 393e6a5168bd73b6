/**
 * A call waiting for a human's approval sends MCP progress notifications (when its request carries
 * a progressToken), so a client whose own request timeout is shorter than the approval's
 * `timeoutSeconds` — the SDK's default is 60 s — keeps waiting when it resets that timeout on
 * progress. The SDK Client against the built server, over stdio and Streamable HTTP: its timeout is
 * a few seconds, the approver decides from another process (the CLI) only after many more
 * notifications than fit in that timeout have arrived, and the call completes with the approval.
 */
import { afterAll, describe, expect, it } from "vitest";
import { type Home, cleanupHomes, cliAsync, httpClient, makeHome, startHttpServer, stdioClient, text, until } from "./support/home.js";
import type { Client } from "./support/home.js";

afterAll(cleanupHomes);

const CLIENT_TIMEOUT_MS = 6_000;
/** Notifications come about once a second: this many span well over the client's timeout. */
const NOTIFICATIONS = 12;

const POLICY = { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 600 } };

async function waitThenApprove(home: Home, client: Client, approverToken: string): Promise<void> {
  const seen: Array<{ progress: number; total?: number; message?: string }> = [];
  const call = client.callTool(
    { name: "card_charge", arguments: { amountCents: 7550, currency: "USD", merchant: "Acme Books", idempotencyKey: "big" } },
    undefined,
    { timeout: CLIENT_TIMEOUT_MS, resetTimeoutOnProgress: true, onprogress: (p) => void seen.push(p) },
  );
  const outcome = call.then(
    (r) => ({ r }),
    (err: unknown) => ({ err }),
  );
  // Not yet decided: the call is alive only because progress keeps resetting the client's timeout.
  await until(async () => {
    const done = await Promise.race([outcome, Promise.resolve(undefined)]);
    if (done && "err" in done) throw new Error(`the call ended while waiting: ${String(done.err)}`);
    return seen.length >= NOTIFICATIONS ? true : undefined;
  }, 120_000, `${NOTIFICATIONS} progress notifications`);
  const pending = await until(async () => {
    const r = await cliAsync(home, ["approvals", "list", "--pending", "--json"], { SIGIL_APPROVER_TOKEN: approverToken });
    const list = r.code === 0 ? JSON.parse(r.stdout) : [];
    return list.length === 1 ? list[0] : undefined;
  }, 60_000, "the pending approval");
  const d = await cliAsync(home, ["approvals", "approve", pending.id, "--json"], { SIGIL_APPROVER_TOKEN: approverToken });
  expect(d.code, d.stderr).toBe(0);
  const done = await outcome;
  if ("err" in done) throw done.err;
  expect(done.r.isError, text(done.r)).toBeFalsy();
  expect((done.r.structuredContent as any).receipt.approvalId).toBe(pending.id);
  // What the notifications said: how long it has waited, of how long, and for which approval.
  for (let i = 1; i < seen.length; i++) expect(seen[i]!.progress).toBeGreaterThan(seen[i - 1]!.progress);
  // total: the wait's length, from when the call began waiting to the approval's expiry (600 s after it was asked).
  expect(seen.every((p) => typeof p.total === "number" && p.total <= 600_000 && p.total > 540_000)).toBe(true);
  expect(seen[0]!.message).toBe(`waiting for a human's decision on approval ${pending.id}`);
}

describe("progress while a call waits for approval", () => {
  it("over stdio: a client with a short request timeout that resets on progress gets the approved result", { timeout: 240_000 }, async () => {
    const home = makeHome();
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: POLICY });
    const { client } = await stdioClient(home, a.token);
    try {
      await waitThenApprove(home, client, ann.token);
    } finally {
      await client.close();
    }
  });

  it("over Streamable HTTP: the notifications travel on the call's own stream", { timeout: 240_000 }, async () => {
    const home = makeHome();
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: POLICY });
    const server = await startHttpServer(home);
    try {
      const { client } = await httpClient(server.url, a.token);
      try {
        await waitThenApprove(home, client, ann.token);
      } finally {
        await client.close();
      }
    } finally {
      await server.stop();
    }
  });
});
