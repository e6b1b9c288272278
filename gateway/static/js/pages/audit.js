// The audit trail (administrators): who did what to which resource, when, and how it ended.

import { query } from "../api.js";
import { formatDate, h, heading, statusBadge, table } from "../dom.js";
import { pagedList } from "../paging.js";

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

  function url(offset) {
    const filters = {
      actor: actor.value.trim(),
      action: action.value.trim(),
      outcome: outcome.value,
      since: isoOrEmpty(since.value),
      until: isoOrEmpty(until.value),
    };
    return `/api/audit${query({ ...filters, limit: LIMIT, offset })}`;
  }

  function show(page) {
    if (!page.items.length) return h("p", { text: "No audit records match." });
    return table(
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
    );
  }

  const load = pagedList(results, { url, show, isCurrent });

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
    load(0);
  });
  view.append(h("section", { class: "page audit" }, heading("Audit trail"), form, results));
  load();
  return null;
}
