/** The passkey ceremonies' page script (served as /console/assets/passkey.js); filled in with passkeys. */
export const PASSKEY_JS = `"use strict";\n`;
