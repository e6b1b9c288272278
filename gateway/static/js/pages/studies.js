// The caller's studies: instances grouped by Study Instance UID with counts per status.

import { api, query } from "../api.js";
import { errorBox, formatDate, h, heading, replace, statusBadge, table } from "../dom.js";
import { pager } from "../live.js";

const ORDER = ["received", "queued", "processing", "done", "failed"];
const LIMIT = 50;

function counts(study) {
  return h(
    "ul",
    { class: "counts" },
    ORDER.filter((s) => study.counts[s]).map((s) => h("li", {}, statusBadge(s), ` ${study.counts[s]}`)),
  );
}

export function render(view, _params, { feed, isCurrent }) {
  const results = h("div", { "aria-busy": "true" });
  let offset = 0;
  let timer = null;

  async function load() {
    try {
      const page = await api(`/api/studies${query({ limit: LIMIT, offset })}`);
      if (!isCurrent()) return;
      if (!page.items.length) {
        replace(results, h("p", { text: "No studies yet." }));
        return;
      }
      replace(
        results,
        table(
          "Your studies",
          [
            { label: "Study", cell: (s) => h("span", { class: "mono", text: s.study_instance_uid }) },
            { label: "Modalities", cell: (s) => s.modalities.join(", ") || "–" },
            { label: "Series", cell: (s) => String(s.series) },
            { label: "Instances", cell: (s) => String(s.instances) },
            { label: "Status", cell: counts },
            { label: "Last change", cell: (s) => formatDate(s.last_updated_at) },
          ],
          page.items,
          (s) => ({ dataset: { study: s.study_instance_uid } }),
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

  // Counts change with every status event: re-read at most every second.
  const reloadSoon = () => {
    if (!timer) timer = setTimeout(() => ((timer = null), load()), 1000);
  };
  feed.addEventListener("status", reloadSoon);
  feed.addEventListener("ready", reloadSoon);
  view.append(h("section", { class: "page studies" }, heading("Studies"), results));
  load();
  return () => {
    clearTimeout(timer);
    feed.removeEventListener("status", reloadSoon);
    feed.removeEventListener("ready", reloadSoon);
  };
}
