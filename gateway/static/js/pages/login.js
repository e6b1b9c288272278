// Log in with e-mail and password; the token is kept for this tab only.

import { api } from "../api.js";
import { announce, errorBox, h, heading } from "../dom.js";
import { readClaims, saveSession } from "../session.js";

export function render(view, _params, { navigate }) {
  const status = h("div", { class: "form-status" });
  const email = h("input", { id: "login-email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", text: "Log in" });
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "login-title", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "login-email", text: "E-mail" }), email),
    h("div", { class: "field" }, h("label", { for: "login-password", text: "Password" }), password),
    status,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    if (!form.checkValidity()) {
      status.append(errorBox(new Error("Enter your e-mail address and password.")));
      return;
    }
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      const answer = await api("/api/auth/login", { method: "POST", json: { email: email.value, password: password.value } });
      const claims = readClaims(answer.access_token);
      saveSession({
        token: answer.access_token,
        expiresAt: answer.expires_at,
        email: claims.email || email.value,
        user: claims.sub || null,
        role: claims.role || "user",
        mustChangePassword: Boolean(answer.must_change_password),
      });
      password.value = "";
      announce(answer.must_change_password ? "Logged in. You must change your password before continuing." : "Logged in.");
      navigate(answer.must_change_password ? "/account" : "/upload");
    } catch (error) {
      const message = error.status === 401 ? "The e-mail address or the password is wrong." : error.message;
      status.append(errorBox(new Error(message)));
      password.focus();
    } finally {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
    }
  });
  const title = heading("Log in");
  title.id = "login-title";
  view.append(h("section", { class: "page login" }, title, form));
}
