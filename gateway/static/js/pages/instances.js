// The caller's instances with their status, filterable, changing live.

import { api, query } from "../api.js";
import { errorBox, formatBytes, formatDate, h, heading, replace, statusBadge } from "../dom.js";
import { pager, watchStatuses } from "../live.js";

const STATUSES = ["", "received", "queued", "processing", "done", "failed"];
const LIMIT = 50;

export function render(view, _params, { feed, params, isCurrent }) {
  const state = { status: params.get("status") || "", offset: 0 };
  const cells = new Map();
  const results = h("div", { id: "instances-results", "aria-busy": "true" });
  const filter = h(
    "select",
    { id: "status-filter", name: "status" },
    STATUSES.map((s) => h("option", { value: s, text: s || "any status", selected: s === state.status })),
  );
  filter.addEventListener("change", () => {
    state.status = filter.value;
    state.offset = 0;
    load();
  });

  async function load() {
    results.setAttribute("aria-busy", "true");
    try {
      const page = await api(`/api/instances${query({ status: state.status, limit: LIMIT, offset: state.offset })}`);
      if (!isCurrent()) return;
      cells.clear();
      replace(results, page.items.length ? instanceTable(page.items, cells) : h("p", { text: "No instances yet." }));
      if (page.total > page.limit) {
        results.append(
          pager(page, (offset) => {
            state.offset = offset;
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
