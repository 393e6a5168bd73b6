/**
 * Command groups that live in their own modules (the core ones are in main.ts). Each registers
 * its subcommands on the program with the shared helpers; add a new group by listing it here.
 */
import type { Command, Option } from "commander";
import type { App } from "../app.js";
import type { Config } from "../config.js";
import { registerSecretCommands } from "./secret.js";
import { registerKeysCommands } from "./keys.js";
import { registerReceiptCommands } from "./receipt.js";
import { registerStoreCommands } from "./store.js";
import { registerCardCommands } from "./card.js";
import { registerTenantCommands } from "./tenant.js";
import { registerExplainCommands } from "./explain.js";
import { registerApprovalCommands } from "./approvals.js";
import { registerOAuthCommands } from "./oauth.js";

export interface CliKit {
  home: () => string;
  /** The environment, parsed once when the command starts (src/config.ts). */
  config: () => Config;
  /** Prints `data` as one JSON document with --json, else the human text. */
  out: (json: boolean, data: unknown, human: () => string) => void;
  /** Opens the home's application (src/app.ts) for the duration of `fn`. */
  withApp: <T>(fn: (app: App) => Promise<T>) => Promise<T>;
  jsonOpt: () => Option;
  readStdin: () => Promise<string>;
}

export type RegisterCommands = (program: Command, kit: CliKit) => void;

export const COMMANDS: RegisterCommands[] = [registerSecretCommands, registerKeysCommands, registerReceiptCommands, registerStoreCommands, registerCardCommands, registerTenantCommands, registerExplainCommands, registerApprovalCommands, registerOAuthCommands];
