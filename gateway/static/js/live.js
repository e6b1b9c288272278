// Keeping a rendered list in step with the live feed: known instances change in place, unknown ones
// (or a reconnect, after which events may have been missed) trigger one debounced re-read.

import { announce, statusBadge, statusRank } from "./dom.js";

/**
 * Watch the feed for a page. `cells` maps instance id → [{cell, label}] whose badge is replaced;
 * `reload()` re-reads the page's data, for an unknown instance that `concerns(update)` the page.
 * Returns the function that stops watching.
 */
export function watchStatuses(feed, { cells, reload, onChange = () => {}, concerns = () => true }) {
  let timer = null;
  const reloadSoon = () => {
    clearTimeout(timer);
    timer = setTimeout(reload, 300);
  };
  const onStatus = (event) => {
    const update = event.detail;
    const targets = cells.get(update.instance_id);
    if (!targets) {
      if (concerns(update)) reloadSoon();
      return;
    }
    for (const { cell, label } of targets) {
      const row = cell.closest("tr");
      // Statuses only move forward; a late event never takes a row back.
      if (row && statusRank(update.status) <= statusRank(row.dataset.status)) continue;
      cell.replaceChildren(statusBadge(update.status));
      if (row) row.dataset.status = update.status;
      if (label) announce(`${label}: ${update.status}`);
    }
    onChange(update);
  };
  feed.addEventListener("status", onStatus);
  feed.addEventListener("ready", reloadSoon);
  return () => {
    clearTimeout(timer);
    feed.removeEventListener("status", onStatus);
    feed.removeEventListener("ready", reloadSoon);
  };
}
