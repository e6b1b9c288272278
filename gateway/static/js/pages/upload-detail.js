// One upload: every file with its outcome at the door and the live status of its instance.

import { api } from "../api.js";
import { errorBox, formatBytes, formatDate, h, heading, replace, statusBadge } from "../dom.js";
import { watchStatuses } from "../live.js";

export function render(view, [uploadId], { feed, isCurrent }) {
  const cells = new Map();
  const results = h("div", { "aria-busy": "true" });

  async function load() {
    try {
      const upload = await api(`/api/uploads/${encodeURIComponent(uploadId)}`);
      if (!isCurrent()) return;
      cells.clear();
      const rows = upload.files.map((file) => {
        const cell = h("td", { "data-label": "Status", class: "status" }, file.instance_status ? statusBadge(file.instance_status) : "–");
        if (file.instance_id) cells.set(file.instance_id, [...(cells.get(file.instance_id) || []), { cell, label: file.name }]);
        return h(
          "tr",
          { dataset: { instance: file.instance_id || "", status: file.instance_status || "" } },
          h("td", { "data-label": "File" }, file.instance_id ? h("a", { href: `#/instances/${file.instance_id}`, text: file.name }) : file.name),
          h("td", { "data-label": "Size", text: formatBytes(file.size) }),
          h("td", { "data-label": "Outcome" }, statusBadge(file.status), file.reason ? h("span", { class: "reason", text: ` ${file.reason}` }) : ""),
          cell,
        );
      });
      replace(
        results,
        h(
          "dl",
          { class: "facts" },
          h("dt", { text: "Received" }),
          h("dd", { text: formatDate(upload.created_at) }),
          h("dt", { text: "Accepted / duplicates / rejected" }),
          h("dd", { text: `${upload.accepted} / ${upload.duplicates} / ${upload.rejected}` }),
        ),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            {},
            h("caption", { text: "Files" }),
            h("thead", {}, h("tr", {}, ["File", "Size", "Outcome", "Status"].map((l) => h("th", { scope: "col", text: l })))),
            h("tbody", {}, rows),
          ),
        ),
      );
    } catch (error) {
      replace(results, errorBox(error.status === 404 ? new Error("There is no such upload.") : error));
    } finally {
      results.setAttribute("aria-busy", "false");
    }
  }

  view.append(h("section", { class: "page upload-detail" }, heading("Upload"), h("p", { class: "mono", text: uploadId }), results));
  load();
  return watchStatuses(feed, { cells, reload: load, concerns: (update) => update.upload_id === uploadId });
}
