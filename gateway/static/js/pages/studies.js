// The caller's studies: instances grouped by Study Instance UID with counts per status.

import { query } from "../api.js";
import { formatDate, h, heading, statusBadge, table } from "../dom.js";
import { pagedList } from "../paging.js";

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
  let timer = null;

  function show(page) {
    if (!page.items.length) return h("p", { text: "No studies yet." });
    return table(
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
    );
  }

  const load = pagedList(results, { url: (offset) => `/api/studies${query({ limit: LIMIT, offset })}`, show, isCurrent });

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
