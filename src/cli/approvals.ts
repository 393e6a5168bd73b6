/**
 * `sigil approver add|list|remove` (the home's owner manages approvers) and `sigil approvals
 * list|approve|deny` (an approver decides, with SIGIL_APPROVER_TOKEN; README: "Approvals").
 * Deciding needs the approver's own token: the decision is signed with that approver's key.
 */
import { SigilError } from "../errors.js";
import type { App } from "../app.js";
import { APPROVAL_STATUSES, type ApprovalView } from "../approval/approvals.js";
import type { ApproverRecord } from "../../store/types.js";
import type { RegisterCommands } from "./commands.js";

async function approverFromEnv(app: App, token: string | undefined, required: boolean): Promise<ApproverRecord | undefined> {
  if (!token) {
    if (required) throw new SigilError("unauthenticated", "Set SIGIL_APPROVER_TOKEN to the approver token `sigil approver add` printed: a decision is signed with that approver's key.");
    return undefined;
  }
  const rec = await app.approvers.byToken(token);
  if (!rec) throw new SigilError("unauthenticated", "SIGIL_APPROVER_TOKEN is not a current approver token of this home (mistyped, removed, or from another home).");
  return rec;
}

function line(a: ApprovalView): string {
  const decided = a.decidedBy?.map((d) => `${d.decision} by ${d.approverId ?? "the client"} (${d.via})`).join(", ");
  return `${a.id}  ${a.status.padEnd(8)} ${a.tool} for ${a.identityId} (tenant ${a.tenantId})  ${JSON.stringify(a.action)}  expires ${a.expiresAt}${decided ? `  ${decided}` : ""}`;
}

export const registerApprovalCommands: RegisterCommands = (program, kit) => {
  const approver = program.command("approver").description("manage approvers: the people who decide approvals for a tenant");
  approver
    .command("add")
    .description("add an approver: its own token (shown once) and signing key")
    .option("--tenant <id>", "the tenant whose approvals it decides", "default")
    .requiredOption("--name <name>", "the person's name")
    .option("--email <address>", "the person's email address")
    .addOption(kit.jsonOpt())
    .action(async (o: { tenant: string; name: string; email?: string; json?: boolean }) => {
      const r = await kit.withApp((app) => app.approvers.add({ tenantId: o.tenant, name: o.name, ...(o.email !== undefined ? { email: o.email } : {}) }));
      kit.out(!!o.json, r, () => `Added approver ${r.id} (${r.name}) to tenant ${r.tenantId}\nApprover token (shown once, give it to ${r.name}): ${r.token}`);
    });
  approver
    .command("list")
    .description("list approvers (never tokens or private keys)")
    .option("--tenant <id>", "only this tenant's")
    .addOption(kit.jsonOpt())
    .action(async (o: { tenant?: string; json?: boolean }) => {
      const r = await kit.withApp((app) => app.approvers.list(o.tenant));
      kit.out(!!o.json, r, () => (r.length === 0 ? "No approvers." : r.map((a) => `${a.id}  ${a.name}  tenant ${a.tenantId}${a.removedAt ? `  removed ${a.removedAt}` : ""}`).join("\n")));
    });
  approver
    .command("remove")
    .description("remove an approver: its token stops working at once; decisions it signed stay verifiable")
    .argument("<id>")
    .addOption(kit.jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await kit.withApp((app) => app.approvers.remove(id));
      kit.out(!!o.json, r, () => `Removed approver ${r.id} at ${r.removedAt}`);
    });

  const approvals = program
    .command("approvals")
    .description("list and decide approvals (deciding needs SIGIL_APPROVER_TOKEN)")
    .addHelpText("after", "\nWith SIGIL_APPROVER_TOKEN, `list` shows what that approver may decide (its tenant's approvals that name it or no one);\nwithout it, every approval of the home. approve/deny sign the decision with that approver's key.");
  approvals
    .command("list")
    .description("list approvals with their status as the identities' audit logs say")
    .option("--pending", "only approvals waiting for a decision")
    .option("--status <status>", `only approvals with this status (${APPROVAL_STATUSES.join(", ")})`)
    .addOption(kit.jsonOpt())
    .action(async (o: { pending?: boolean; status?: string; json?: boolean }) => {
      if (o.status !== undefined && !(APPROVAL_STATUSES as readonly string[]).includes(o.status)) {
        throw new SigilError("invalid_arguments", `--status must be one of ${APPROVAL_STATUSES.join(", ")}.`);
      }
      const status = (o.pending ? "pending" : o.status) as ApprovalView["status"] | undefined;
      const r = await kit.withApp(async (app) => {
        const who = await approverFromEnv(app, kit.config().approverToken, false);
        return app.approvals.list({ ...(who ? { approver: who } : {}), ...(status ? { status } : {}) });
      });
      kit.out(!!o.json, r, () => (r.length === 0 ? "No approvals." : r.map(line).join("\n")));
    });
  for (const decision of ["approve", "deny"] as const) {
    approvals
      .command(decision)
      .description(decision === "approve" ? "approve a pending approval (signed with your approver key)" : "deny a pending approval: the action is refused")
      .argument("<id>", "the approval id (apv_…)")
      .option("--reason <text>", "why (recorded in the audit log)")
      .addOption(kit.jsonOpt())
      .action(async (id: string, o: { reason?: string; json?: boolean }) => {
        const r = await kit.withApp(async (app) => {
          const who = (await approverFromEnv(app, kit.config().approverToken, true))!;
          return app.approvals.decide(who, id, decision, o.reason);
        });
        kit.out(!!o.json, r, () =>
          r.status === "pending" ? `Recorded your ${decision} of ${r.approvalId}; more approvers must approve (quorum).` : `Recorded your ${decision} of ${r.approvalId}: it is now ${r.status}.`,
        );
      });
  }
};
