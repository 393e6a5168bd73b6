/**
 * libsodium, loaded once. Its WASM build must be ready before sealing (seal.ts) or key generation
 * (ed25519.ts); `cryptoReady()` is awaited where a home is opened.
 */
import sodium from "libsodium-wrappers";

export { sodium };

let ready = false;
export async function cryptoReady(): Promise<void> {
  if (ready) return;
  await sodium.ready;
  ready = true;
}
