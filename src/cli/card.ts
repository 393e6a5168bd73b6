/**
 * `sigil card merchant add NAME MCC` / `sigil card merchant list`: the merchants the embedded card
 * processor knows, with their categories (`$SIGIL_HOME/card/merchants.json`). A policy with
 * category rules refuses charges to merchants whose category the processor cannot state, so an
 * operator lists the merchants agents may pay here (README: "Merchant categories").
 */
import { SigilError, safeText } from "../errors.js";
import type { RegisterCommands } from "./commands.js";

export const registerCardCommands: RegisterCommands = (program, kit) => {
  const card = program.command("card").description("the embedded card processor's data");
  const merchant = card.command("merchant").description("merchants and their categories (MCC), as the embedded card processor knows them");
  merchant
    .command("add")
    .description("record (or change) a merchant's category in $SIGIL_HOME/card/merchants.json")
    .argument("<name>", "the merchant's name as agents give it (matched ignoring case and extra spaces)")
    .argument("<mcc>", "its 4-digit merchant category code, e.g. 5734")
    .addOption(kit.jsonOpt())
    .action(async (name: string, mcc: string, o: { json?: boolean }) => {
      const { addMerchant } = await import("../providers/card/embedded.js");
      const r = await kit.withApp(async () => {
        try {
          return await addMerchant(kit.home(), name, mcc);
        } catch (err) {
          if (err instanceof Error && /^the (merchant name|category) /.test(err.message)) throw new SigilError("invalid_arguments", `${err.message}.`);
          if (err instanceof Error && /merchants\.json/.test(err.message)) throw new SigilError("invalid_arguments", `${err.message}; fix or remove the file first.`);
          throw err;
        }
      });
      kit.out(!!o.json, r, () => `${safeText(r.merchant, 200)}: category ${r.category}${r.previous ? ` (was ${r.previous})` : ""}`);
    });
  merchant
    .command("list")
    .description("print the merchants the embedded card processor knows")
    .addOption(kit.jsonOpt())
    .action(async (o: { json?: boolean }) => {
      const { readMerchants } = await import("../providers/card/embedded.js");
      const known = await kit.withApp(async () => {
        try {
          return await readMerchants(kit.home());
        } catch (err) {
          throw new SigilError("invalid_arguments", `${(err as Error).message}.`);
        }
      });
      const doc = Object.fromEntries([...known.values()].map((m) => [m.name, m.category]));
      kit.out(!!o.json, doc, () => [...known.values()].map((m) => `${m.category}  ${safeText(m.name, 200)}`).join("\n") || "(no merchants)");
    });
};
