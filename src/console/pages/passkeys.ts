/** Passkeys (WebAuthn) of approvers: registered in the console, used to sign in and to approve. */
import type { Ctx } from "../routes.js";

export async function passkeysOf(_ctx: Ctx, _approverId: string): Promise<Array<{ id: string }>> {
  return [];
}
