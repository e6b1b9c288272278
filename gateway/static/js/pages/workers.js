// The live workers (administrators): every processor that sent a heartbeat lately, and its load.
//
// Polled every 2 s rather than pushed: the live feed carries one user's instance statuses, while this list lives
// in results_service's memory (from the workers' heartbeats) and changes with every heartbeat; one small GET per
// open admin page is cheaper and simpler than announcing every heartbeat to every gateway replica.

import { api } from "../api.js";
import { errorBox, formatBytes, formatDate, formatNumber, h, heading, replace, table } from "../dom.js";

const REFRESH_MS = 2000;

function percent(part, whole) {
  return whole > 0 ? ` (${Math.round((100 * part) / whole)}%)` : "";
}

function secondsAgo(iso, now) {
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  return h("time", { datetime: iso, title: formatDate(iso), text: `${seconds} s ago` });
}

function state(worker) {
  const badge = h("span", { class: "badge", "data-status": worker.paused ? "paused" : "running", text: worker.paused ? "paused" : "running" });
  return worker.paused && worker.pause_reason ? [badge, " ", h("span", { class: "reason", text: worker.pause_reason })] : badge;
}

function decoders(worker, open) {
  const items = worker.decoders.map((d) =>
    h("li", {}, h("span", { text: d.name }), d.plugins.length ? h("span", { class: "muted", text: ` (${d.plugins.join(", ")})` }) : null),
  );
  return h(
    "details",
    { open: open.has(worker.worker), dataset: { worker: worker.worker } },
    h("summary", { text: `${worker.decoders.length} transfer syntaxes` }),
    h("ul", { class: "decoders" }, items),
  );
}

function summaryList(summary) {
  const entries = [
    ["Live workers", formatNumber(summary.workers)],
    ["Paused", formatNumber(summary.paused)],
    ["Memory budget", formatBytes(summary.memory_budget_bytes)],
    ["Reserved", `${formatBytes(summary.reserved_bytes)}${percent(summary.reserved_bytes, summary.memory_budget_bytes)}`],
    ["Jobs in flight", `${formatNumber(summary.jobs_in_flight)} of ${formatNumber(summary.cpu_slots)} slots`],
    ["CPU", `${formatNumber(summary.cpu_percent, 3)}%`],
    ["Memory", formatBytes(summary.memory_bytes)],
  ];
  return h("dl", { class: "summary", id: "workers-summary" }, entries.map(([term, value]) => h("div", {}, h("dt", { text: term }), h("dd", { text: value }))));
}

function show(body, open) {
  const now = Date.now();
  if (!body.items.length) {
    return [summaryList(body.summary), h("p", { text: `No worker has reported in the last ${formatNumber(body.stale_after_seconds)} seconds.` })];
  }
  const columns = [
    { label: "Worker", cell: (w) => h("span", { class: "mono nowrap", text: w.worker }) },
    { label: "Queues", cell: (w) => w.queues.join(", ") },
    { label: "Memory budget", cell: (w) => formatBytes(w.memory_budget_bytes) },
    { label: "Reserved", cell: (w) => `${formatBytes(w.reserved_bytes)}${percent(w.reserved_bytes, w.memory_budget_bytes)}` },
    { label: "Jobs in flight", cell: (w) => `${formatNumber(w.jobs_in_flight)} of ${formatNumber(w.cpu_slots)}` },
    { label: "CPU", cell: (w) => `${formatNumber(w.cpu_percent, 3)}%` },
    { label: "Memory", cell: (w) => formatBytes(w.memory_bytes) },
    { label: "State", cell: state },
    { label: "Decoders", cell: (w) => decoders(w, open) },
    { label: "Last seen", cell: (w) => secondsAgo(w.last_seen, now) },
  ];
  return [
    summaryList(body.summary),
    table(`Live workers, refreshed every ${REFRESH_MS / 1000} seconds`, columns, body.items, (w) => ({
      dataset: { worker: w.worker, paused: String(w.paused) },
    })),
  ];
}

export function render(view, _params, { isCurrent }) {
  const results = h("div", { id: "workers", "aria-busy": "true" });
  const updated = h("p", { class: "muted", id: "workers-updated" });
  let timer = null;
  let stopped = false;

  async function refresh() {
    try {
      const body = await api("/api/workers");
      if (stopped || !isCurrent()) return;
      // Keep the decoder lists a reader opened open across refreshes.
      const open = new Set([...results.querySelectorAll("details[open]")].map((d) => d.dataset.worker));
      replace(results, show(body, open));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    } catch (error) {
      if (stopped || !isCurrent()) return;
      replace(results, errorBox(error));
    } finally {
      results.setAttribute("aria-busy", "false");
    }
    if (!stopped && isCurrent()) timer = setTimeout(refresh, REFRESH_MS);
  }

  view.append(
    h(
      "section",
      { class: "page workers" },
      heading("Workers"),
      h("p", { text: "Every processor that reported in lately, with its admission budget and what it uses now." }),
      updated,
      results,
    ),
  );
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
