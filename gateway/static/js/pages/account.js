// Change your password: the current one and the new one, twice. After an admin's reset this is the only page
// (the API answers 403 to everything else) until the new password is saved.

import { api } from "../api.js";
import { announce, errorBox, h, heading } from "../dom.js";
import { getSession, saveSession } from "../session.js";

const MIN_LENGTH = 12;
const LABELS = { current_password: "Current password", new_password: "New password" };

function passwordField(id, label, autocomplete, hint) {
  const input = h("input", { id, name: id, type: "password", autocomplete, required: true });
  const parts = [h("label", { for: id, text: label }), input];
  if (hint) {
    const hintId = `${id}-hint`;
    input.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { id: hintId, class: "hint", text: hint }));
  }
  return { input, field: h("div", { class: "field" }, ...parts) };
}

/** The problem's field errors in the words of this form's labels. */
function explained(error) {
  const messages = error.fields.map((f) => (LABELS[f.field] ? `${LABELS[f.field]}: ${f.message}` : f.message));
  return new Error(messages.length ? messages.join(" ") : error.message);
}

export function render(view, _params, { navigate }) {
  const mustChange = Boolean(getSession()?.mustChangePassword);
  const status = h("div", { class: "form-status" });
  const current = passwordField("current-password", "Current password", "current-password");
  const next = passwordField("new-password", "New password", "new-password", `At least ${MIN_LENGTH} characters.`);
  const again = passwordField("repeat-password", "New password again", "new-password");
  const submit = h("button", { type: "submit", text: "Change password" });
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "account-title", novalidate: true },
    current.field,
    next.field,
    again.field,
    status,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const problem = !current.input.value
      ? "Enter your current password."
      : next.input.value.length < MIN_LENGTH
        ? `The new password must have at least ${MIN_LENGTH} characters.`
        : next.input.value !== again.input.value
          ? "The two new passwords differ."
          : null;
    if (problem) {
      status.append(errorBox(new Error(problem)));
      return;
    }
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      await api("/api/auth/password", {
        method: "POST",
        json: { current_password: current.input.value, new_password: next.input.value },
      });
      for (const field of [current, next, again]) field.input.value = "";
      const session = getSession();
      if (session) saveSession({ ...session, mustChangePassword: false });
      announce("Your password has been changed.");
      if (mustChange) {
        navigate("/upload");
        return;
      }
      status.append(h("p", { class: "success", role: "status", text: "Your password has been changed." }));
    } catch (error) {
      status.append(errorBox(error.status === 422 ? explained(error) : error));
      current.input.focus();
    } finally {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
    }
  });
  const title = heading("Change password");
  title.id = "account-title";
  const intro = mustChange
    ? "An administrator has reset your password. Choose a new one to continue."
    : "Your other sessions are logged out when the password changes.";
  view.append(h("section", { class: "page account" }, title, h("p", { text: intro }), form));
}
