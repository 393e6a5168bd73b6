/** Where a sigil home lives and how its master key is found. */
import os from "node:os";
import path from "node:path";
import { promises as fsp } from "node:fs";
import { MasterKey } from "./crypto/core.js";
import { SigilError } from "./errors.js";

export function resolveHome(env: NodeJS.ProcessEnv): string {
  const h = env.SIGIL_HOME && env.SIGIL_HOME.trim() !== "" ? env.SIGIL_HOME : path.join(os.homedir(), ".sigil");
  return path.resolve(h);
}

export const masterKeyFile = (home: string): string => path.join(home, "master.key");

/**
 * The master key: `SIGIL_MASTER_KEY` (base64, 32 bytes) or the home's key file. Never generated
 * here: only `sigil init` creates one, so a lost key can never be silently replaced over data.
 */
export async function loadMasterKey(home: string, env: NodeJS.ProcessEnv): Promise<MasterKey> {
  if (env.SIGIL_MASTER_KEY) {
    try {
      return MasterKey.fromBase64(env.SIGIL_MASTER_KEY);
    } catch {
      throw new SigilError("master_key_invalid", "SIGIL_MASTER_KEY is not base64 of 32 bytes.");
    }
  }
  let text: string;
  try {
    text = await fsp.readFile(masterKeyFile(home), "utf8");
  } catch {
    throw new SigilError(
      "master_key_missing",
      `The master key is missing: set SIGIL_MASTER_KEY or restore ${masterKeyFile(home)}; sigil will not start without it.`,
    );
  }
  try {
    return MasterKey.fromBase64(text);
  } catch {
    throw new SigilError("master_key_invalid", `${masterKeyFile(home)} does not hold a valid master key.`);
  }
}
