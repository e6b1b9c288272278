// The caller's instances with their status, filterable, changing live.

import { query } from "../api.js";
import { formatBytes, formatDate, h, heading, statusBadge } from "../dom.js";
import { watchStatuses } from "../live.js";
import { pagedList } from "../paging.js";

const STATUSES = ["", "received", "queued", "processing", "done", "failed"];
const LIMIT = 50;

export function render(view, _params, { feed, params, isCurrent }) {
  let status = params.get("status") || "";
  const cells = new Map();
  const results = h("div", { id: "instances-results", "aria-busy": "true" });
  const filter = h(
    "select",
    { id: "status-filter", name: "status" },
    STATUSES.map((s) => h("option", { value: s, text: s || "any status", selected: s === status })),
  );
  const load = pagedList(results, {
    url: (offset) => `/api/instances${query({ status, limit: LIMIT, offset })}`,
    show(page) {
      cells.clear();
      return page.items.length ? instanceTable(page.items, cells) : h("p", { text: "No instances yet." });
    },
    isCurrent,
    markBusy: true,
  });
  filter.addEventListener("change", () => {
    status = filter.value;
    load(0);
  });

  view.append(
    h(
      "section",
      { class: "page instances" },
      heading("Instances"),
      h("div", { class: "toolbar" }, h("label", { for: "status-filter", text: "Status" }), filter),
      results,
    ),
  );
  load();
  return watchStatuses(feed, { cells, reload: load });
}

/** A table of instances; each status cell is registered in `cells` for live updates. */
export function instanceTable(items, cells, caption = "Your instances") {
  const rows = items.map((item) => {
    const cell = h("td", { "data-label": "Status", class: "status" }, statusBadge(item.status));
    cells.set(item.id, [...(cells.get(item.id) || []), { cell, label: item.file_name }]);
    return h(
      "tr",
      { dataset: { instance: item.id, status: item.status } },
      h("td", { "data-label": "File" }, h("a", { href: `#/instances/${item.id}`, text: item.file_name || item.id })),
      h("td", { "data-label": "Modality", text: item.modality || "–" }),
      h("td", { "data-label": "Size", text: formatBytes(item.size) }),
      cell,
      h("td", { "data-label": "Received", text: formatDate(item.created_at) }),
      h("td", { "data-label": "Upload" }, h("a", { href: `#/uploads/${item.upload_id}`, text: "upload", "aria-label": `Upload of ${item.file_name}` })),
    );
  });
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "instances-table" },
      h("caption", { text: caption }),
      h(
        "thead",
        {},
        h("tr", {}, ["File", "Modality", "Size", "Status", "Received", "Upload"].map((l) => h("th", { scope: "col", text: l }))),
      ),
      h("tbody", {}, rows),
    ),
  );
}
