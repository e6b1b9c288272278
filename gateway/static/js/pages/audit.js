// The audit trail (administrators): who did what to which resource, when, and how it ended.

import { api, query } from "../api.js";
import { errorBox, formatDate, h, heading, replace, statusBadge, table } from "../dom.js";
import { pager } from "../live.js";

const LIMIT = 50;

function field(id, label, input) {
  return h("div", { class: "field" }, h("label", { for: id, text: label }), input);
}

function isoOrEmpty(local) {
  return local ? new Date(local).toISOString() : "";
}

export function render(view, _params, { isCurrent }) {
  const actor = h("input", { id: "audit-actor", name: "actor", type: "search" });
  const action = h("input", { id: "audit-action", name: "action", type: "search", placeholder: "e.g. auth. or instance.read" });
  const outcome = h(
    "select",
    { id: "audit-outcome", name: "outcome" },
    ["", "success", "failure", "denied"].map((o) => h("option", { value: o, text: o || "any" })),
  );
  const since = h("input", { id: "audit-since", name: "since", type: "datetime-local" });
  const until = h("input", { id: "audit-until", name: "until", type: "datetime-local" });
  const results = h("div", { "aria-busy": "true" });
  let offset = 0;

  async function load() {
    try {
      const filters = {
        actor: actor.value.trim(),
        action: action.value.trim(),
        outcome: outcome.value,
        since: isoOrEmpty(since.value),
        until: isoOrEmpty(until.value),
      };
      const page = await api(`/api/audit${query({ ...filters, limit: LIMIT, offset })}`);
      if (!isCurrent()) return;
      if (!page.items.length) {
        replace(results, h("p", { text: "No audit records match." }));
        return;
      }
      replace(
        results,
        table(
          "Audit records, newest first",
          [
            { label: "When", cell: (e) => formatDate(e.at) },
            { label: "Who", cell: (e) => e.actor_email || e.actor_id || "anonymous" },
            { label: "Action", cell: (e) => h("span", { class: "mono nowrap", text: e.action }) },
            { label: "Resource", cell: (e) => [e.resource_type, e.resource_id].filter(Boolean).join(" ") || "–" },
            { label: "Outcome", cell: (e) => statusBadge(e.outcome) },
            { label: "Client", cell: (e) => e.client || "–" },
            { label: "Correlation id", cell: (e) => h("span", { class: "mono", text: e.correlation_id || "–" }) },
          ],
          page.items,
        ),
      );
      if (page.total > page.limit) {
        results.append(
          pager(page, (next) => {
            offset = next;
            load();
          }, h),
        );
      }
    } catch (error) {
      replace(results, errorBox(error));
    } finally {
      results.setAttribute("aria-busy", "false");
    }
  }

  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the audit trail" },
    field("audit-actor", "User (id or e-mail)", actor),
    field("audit-action", "Action", action),
    field("audit-outcome", "Outcome", outcome),
    field("audit-since", "From", since),
    field("audit-until", "Until", until),
    h("div", { class: "field" }, h("button", { type: "submit", text: "Apply" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    load();
  });
  view.append(h("section", { class: "page audit" }, heading("Audit trail"), form, results));
  load();
  return null;
}
