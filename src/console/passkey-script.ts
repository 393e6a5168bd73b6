/**
 * The passkey ceremonies' page script (served as /console/assets/passkey.js, after the
 * @simplewebauthn/browser bundle): registration on the passkeys page, sign-in on the sign-in page,
 * approval on an approval's page. Each asks the server for options, runs the browser's WebAuthn
 * through SimpleWebAuthnBrowser, and posts the answer as JSON with the form's CSRF token.
 */
export const PASSKEY_JS = `"use strict";
(function () {
  const W = window.SimpleWebAuthnBrowser;
  function wire(formId, optionsUrl, finishUrl, run, extra) {
    const form = document.getElementById(formId);
    if (!form || !W) return;
    const err = form.querySelector("#passkey-error");
    const csrf = form.querySelector("input[name=csrf]").value;
    const post = (url, body) =>
      fetch(url, { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify(body || {}) }).then((r) => r.json());
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (err) err.hidden = true;
      post(optionsUrl(form))
        .then((o) => {
          if (!o.ok) throw new Error(o.error);
          return run({ optionsJSON: o.options });
        })
        .then((response) => post(finishUrl(form), Object.assign({ response }, extra ? extra(form) : {})))
        .then((done) => {
          if (!done.ok) throw new Error(done.error);
          window.location.assign(done.next);
        })
        .catch((e2) => {
          if (err) {
            err.textContent = String((e2 && e2.message) || e2);
            err.hidden = false;
          }
        });
    });
  }
  wire("passkey-register", () => "/console/passkeys/register/options", () => "/console/passkeys/register", (o) => W.startRegistration(o), (f) => ({ name: f.querySelector("#passkey-name").value }));
  wire("passkey-signin", () => "/console/passkeys/sign-in/options", () => "/console/passkeys/sign-in", (o) => W.startAuthentication(o), (f) => ({ next: f.getAttribute("data-next") || "" }));
  wire(
    "passkey-approve",
    (f) => "/console/approvals/" + f.getAttribute("data-approval") + "/passkey/options",
    (f) => "/console/approvals/" + f.getAttribute("data-approval") + "/passkey",
    (o) => W.startAuthentication(o),
    () => { const r = document.getElementById("reason"); return { reason: r ? r.value : "" }; },
  );
})();
`;
