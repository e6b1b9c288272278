// "My uploads": the caller's instances grouped by the upload they came in, with live status counts.

import { api, query } from "../api.js";
import { announce, errorBox, formatDate, h, heading, replace, statusBadge } from "../dom.js";

const ORDER = ["received", "queued", "processing", "done", "failed"];
const LIMIT = 200;

function groupByUpload(items) {
  const groups = new Map();
  for (const item of items) {
    if (!groups.has(item.upload_id)) groups.set(item.upload_id, { id: item.upload_id, first: item.created_at, statuses: new Map() });
    const group = groups.get(item.upload_id);
    group.statuses.set(item.id, item.status);
    if (item.created_at < group.first) group.first = item.created_at;
  }
  return [...groups.values()].sort((a, b) => (a.first < b.first ? 1 : -1));
}

function countsOf(group) {
  const counts = Object.fromEntries(ORDER.map((s) => [s, 0]));
  for (const status of group.statuses.values()) counts[status] = (counts[status] || 0) + 1;
  return counts;
}

function summary(group) {
  const counts = countsOf(group);
  return h(
    "ul",
    { class: "counts" },
    ORDER.filter((s) => counts[s]).map((s) => h("li", {}, statusBadge(s), ` ${counts[s]}`)),
  );
}

export function render(view, _params, { feed, isCurrent }) {
  const results = h("div", { id: "uploads-results", "aria-busy": "true" });
  let groups = [];
  const summaryCells = new Map();
  let timer = null;

  async function load() {
    try {
      const page = await api(`/api/instances${query({ limit: LIMIT, offset: 0 })}`);
      if (!isCurrent()) return;
      groups = groupByUpload(page.items);
      summaryCells.clear();
      if (!groups.length) {
        replace(results, h("p", {}, "Nothing uploaded yet. ", h("a", { href: "#/upload", text: "Upload files" }), "."));
        return;
      }
      const rows = groups.map((group) => {
        const cell = h("td", { "data-label": "Instances" }, summary(group));
        summaryCells.set(group.id, cell);
        return h(
          "tr",
          { dataset: { upload: group.id } },
          h("td", { "data-label": "Upload" }, h("a", { href: `#/uploads/${group.id}`, text: group.id })),
          h("td", { "data-label": "Received", text: formatDate(group.first) }),
          cell,
        );
      });
      replace(
        results,
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            {},
            h("caption", { text: page.total > page.items.length ? `Latest ${page.items.length} instances` : "Your uploads" }),
            h("thead", {}, h("tr", {}, ["Upload", "Received", "Instances"].map((l) => h("th", { scope: "col", text: l })))),
            h("tbody", {}, rows),
          ),
        ),
      );
    } catch (error) {
      replace(results, errorBox(error));
    } finally {
      results.setAttribute("aria-busy", "false");
    }
  }

  const reloadSoon = () => {
    clearTimeout(timer);
    timer = setTimeout(load, 300);
  };
  const onStatus = (event) => {
    const update = event.detail;
    const group = groups.find((g) => g.statuses.has(update.instance_id));
    if (!group) return reloadSoon();
    group.statuses.set(update.instance_id, update.status);
    replace(summaryCells.get(group.id), summary(group));
    const counts = countsOf(group);
    if (counts.done + counts.failed === group.statuses.size) announce(`Upload ${group.id} finished processing.`);
  };
  feed.addEventListener("status", onStatus);
  feed.addEventListener("ready", reloadSoon);

  view.append(h("section", { class: "page uploads" }, heading("My uploads"), results));
  load();
  return () => {
    clearTimeout(timer);
    feed.removeEventListener("status", onStatus);
    feed.removeEventListener("ready", reloadSoon);
  };
}
