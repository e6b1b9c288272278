// Upload files or whole folders: drag and drop or pickers, a progress bar per file and overall,
// the outcome of each file from the 202 answer, then its processing status live from the feed.

import { api, uploadFiles } from "../api.js";
import { announce, errorBox, formatBytes, h, heading, statusBadge, statusRank } from "../dom.js";
import { filesFromDataTransfer, filesFromList } from "../files.js";

// One request carries at most this much, so a huge folder goes up as several uploads.
const BATCH_FILES = 100;
const BATCH_BYTES = 256 * 1024 * 1024;

function batchesOf(rows) {
  const batches = [];
  let current = [];
  let bytes = 0;
  for (const row of rows) {
    if (current.length && (current.length >= BATCH_FILES || bytes + row.size > BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(row);
    bytes += row.size;
  }
  if (current.length) batches.push(current);
  return batches;
}

function fileRow(row) {
  row.progress = h("progress", { max: "100", value: "0", "aria-label": `Upload progress of ${row.name}` });
  row.outcome = h("span", { class: "outcome", text: "waiting" });
  row.status = h("span", { class: "live-status" }, "–");
  row.tr = h(
    "tr",
    { dataset: { file: row.name } },
    h("td", { "data-label": "File", class: "name" }, row.name),
    h("td", { "data-label": "Size", text: row.size === null ? "–" : formatBytes(row.size) }),
    h("td", { "data-label": "Sent" }, row.progress),
    h("td", { "data-label": "Outcome" }, row.outcome),
    h("td", { "data-label": "Status" }, row.status),
  );
  return row.tr;
}

// The page lives across navigations (an upload keeps going while you look elsewhere) until log-out.
let page = null;
window.addEventListener("logged-out", () => {
  if (page) page.dispose();
  page = null;
});

export function render(view, _params, { feed }) {
  if (!page) page = buildPage(feed);
  view.append(page.section);
  return null;
}

function buildPage(feed) {
  let rows = [];
  let busy = false;
  let current = null;
  const rowsByInstance = new Map();
  // Events can overtake the 202 answer (a small file may be done before the browser reads it).
  const latest = new Map();

  const filePicker = h("input", { id: "pick-files", type: "file", multiple: true, class: "visually-hidden" });
  const folderPicker = h("input", { id: "pick-folder", type: "file", webkitdirectory: true, class: "visually-hidden" });
  const tbody = h("tbody");
  const overall = h("progress", { id: "overall-progress", max: "100", value: "0" });
  const overallText = h("span", { id: "overall-text", text: "Nothing selected." });
  const message = h("div", { class: "form-status" });
  const start = h("button", { type: "button", id: "start-upload", text: "Upload", disabled: true });
  const cancel = h("button", { type: "button", class: "secondary", text: "Cancel", hidden: true });
  const clear = h("button", { type: "button", class: "secondary", text: "Clear list", disabled: true });
  const zone = h(
    "div",
    { class: "drop-zone", id: "drop-zone" },
    h("p", { text: "Drop DICOM files or folders here, or" }),
    h(
      "div",
      { class: "pickers" },
      h("label", { for: "pick-files", class: "button", text: "Choose files" }),
      filePicker,
      h("label", { for: "pick-folder", class: "button secondary", text: "Choose a folder" }),
      folderPicker,
    ),
  );

  function refresh() {
    start.disabled = busy || !rows.some((row) => !row.sent);
    clear.disabled = busy || !rows.length;
    cancel.hidden = !busy;
  }

  function describeSelection() {
    refresh();
    const total = rows.reduce((sum, row) => sum + (row.size || 0), 0);
    overallText.textContent = rows.length ? `${rows.length} file(s), ${formatBytes(total)}` : "Nothing selected.";
  }

  function add(files) {
    if (busy) return;
    for (const { file, name } of files) {
      if (rows.some((row) => row.name === name && row.size === file.size && !row.sent)) continue;
      const row = { file, name, size: file.size, sent: false };
      rows.push(row);
      tbody.append(fileRow(row));
    }
    overall.value = 0;
    describeSelection();
    announce(`${rows.length} file(s) ready to upload.`);
  }

  /** Show a status unless the row already shows a later one (events and answers may cross). */
  function showStatus(row, status) {
    if (!status || statusRank(status) <= statusRank(row.tr.dataset.status)) return false;
    row.tr.dataset.status = status;
    row.status.replaceChildren(h("a", { href: `#/instances/${row.instanceId}` }, statusBadge(status)));
    return true;
  }

  async function showOutcome(row, file) {
    const outcome = file.status || "unknown";
    row.tr.dataset.outcome = outcome;
    row.outcome.replaceChildren(statusBadge(outcome), file.reason ? h("span", { class: "reason", text: ` ${file.reason}` }) : "");
    row.instanceId = file.instance_id || null;
    if (!row.instanceId) return;
    row.tr.dataset.instance = row.instanceId;
    rowsByInstance.set(row.instanceId, [...(rowsByInstance.get(row.instanceId) || []), row]);
    // A new file was queued before the 202 was sent; a duplicate is wherever its first copy is.
    if (outcome === "accepted") showStatus(row, "queued");
    showStatus(row, latest.get(row.instanceId));
    if (outcome === "duplicate") {
      try {
        showStatus(row, (await api(`/api/instances/${encodeURIComponent(row.instanceId)}`)).status);
      } catch {
        // The link still leads to the instance; its page says what is wrong.
      }
    }
  }

  /** Match the answer to the files sent: one entry per file, unless archives were unpacked into many. */
  function applyReceipt(batch, receipt) {
    const files = Array.isArray(receipt.files) ? receipt.files : [];
    if (files.length === batch.length) {
      batch.forEach((row, position) => showOutcome(row, files[position]));
      return;
    }
    for (const row of batch) {
      row.outcome.replaceChildren(h("span", { class: "reason", text: "unpacked; see the files below" }));
      row.tr.dataset.outcome = "unpacked";
    }
    for (const file of files) {
      const row = { file: null, name: file.name, size: null, sent: true };
      rows.push(row);
      tbody.append(fileRow(row));
      row.progress.value = 100;
      showOutcome(row, file);
    }
  }

  async function send() {
    const pending = rows.filter((row) => !row.sent);
    const totalBytes = pending.reduce((sum, row) => sum + row.size, 0) || 1;
    let doneBytes = 0;
    busy = true;
    message.replaceChildren();
    refresh();
    try {
      for (const batch of batchesOf(pending)) {
        const batchBytes = batch.reduce((sum, row) => sum + row.size, 0);
        for (const row of batch) row.outcome.textContent = "sending";
        current = uploadFiles(batch, {
          onProgress(loaded, total) {
            // The multipart body sends the files in order, so bytes sent map onto files.
            let sent = (loaded / total) * batchBytes;
            for (const row of batch) {
              const part = Math.max(0, Math.min(row.size, sent));
              row.progress.value = row.size ? (100 * part) / row.size : 100;
              sent -= row.size;
            }
            const fraction = (doneBytes + (loaded / total) * batchBytes) / totalBytes;
            overall.value = 100 * fraction;
            overallText.textContent = `${Math.round(100 * fraction)} % sent`;
          },
        });
        const receipt = await current.promise;
        doneBytes += batchBytes;
        for (const row of batch) {
          row.sent = true;
          row.progress.value = 100;
        }
        applyReceipt(batch, receipt);
      }
      overall.value = 100;
      const rejected = rows.filter((row) => row.tr.dataset.outcome === "rejected").length;
      overallText.textContent = rejected ? `Sent; ${rejected} file(s) rejected.` : "Sent; processing follows below.";
      announce(overallText.textContent);
    } catch (error) {
      for (const row of pending) if (!row.sent) row.outcome.textContent = "not sent";
      message.replaceChildren(errorBox(error));
      overallText.textContent = "The upload stopped.";
    } finally {
      busy = false;
      current = null;
      refresh();
    }
  }

  function onStatus(event) {
    const update = event.detail;
    if (statusRank(update.status) > statusRank(latest.get(update.instance_id))) latest.set(update.instance_id, update.status);
    for (const row of rowsByInstance.get(update.instance_id) || []) {
      if (showStatus(row, update.status)) announce(`${row.name}: ${update.status}`);
    }
  }

  filePicker.addEventListener("change", () => {
    add(filesFromList(filePicker.files));
    filePicker.value = "";
  });
  folderPicker.addEventListener("change", () => {
    add(filesFromList(folderPicker.files));
    folderPicker.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    try {
      add(await filesFromDataTransfer(event.dataTransfer));
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  });
  start.addEventListener("click", send);
  cancel.addEventListener("click", () => current && current.abort());
  clear.addEventListener("click", () => {
    rows = [];
    rowsByInstance.clear();
    tbody.replaceChildren();
    overall.value = 0;
    describeSelection();
  });
  feed.addEventListener("status", onStatus);

  const section = h(
    "section",
    { class: "page upload" },
    heading("Upload"),
    zone,
    h(
      "div",
      { class: "overall" },
      h("label", { for: "overall-progress", text: "Overall" }),
      overall,
      h("span", { "aria-live": "polite" }, overallText),
    ),
    h("div", { class: "actions" }, start, cancel, clear),
    message,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "upload-files" },
        h("caption", { text: "Files of this upload" }),
        h("thead", {}, h("tr", {}, ["File", "Size", "Sent", "Outcome", "Status"].map((label) => h("th", { scope: "col", text: label })))),
        tbody,
      ),
    ),
  );
  return {
    section,
    dispose() {
      feed.removeEventListener("status", onStatus);
      if (current) current.abort();
    },
  };
}
