// One instance: identity, live status, and once processed the preview, the statistics and the histogram.

import { api, apiObjectUrl } from "../api.js";
import { announce, errorBox, formatBytes, formatDate, formatNumber, h, heading, replace, statusBadge } from "../dom.js";
import { drawHistogram } from "../chart.js";

function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, value]) => value !== null && value !== undefined).flatMap(([label, value]) => [h("dt", { text: label }), h("dd", {}, value)]),
  );
}

function statisticsTable(result) {
  const columns = ["min", "max", "mean", "std"];
  const row = (label, stats) =>
    h("tr", {}, h("th", { scope: "row", text: label }), columns.map((c) => h("td", { "data-label": c, text: stats ? formatNumber(stats[c], 6) : "–" })));
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id: "statistics" },
      h("caption", { text: "Pixel statistics" }),
      h("thead", {}, h("tr", {}, h("td", {}), columns.map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, row("Original", result.original), row("Normalised (0–1)", result.normalized)),
    ),
  );
}

function histogramFigure(histogram, disposers) {
  const canvas = h("canvas", {
    id: "histogram",
    class: "histogram",
    role: "img",
    "aria-label": `Histogram of pixel values from ${formatNumber(histogram.low)} to ${formatNumber(histogram.high)} in ${histogram.counts.length} bins; the counts are in the table below.`,
  });
  const data = h(
    "details",
    {},
    h("summary", { text: "Histogram counts" }),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("caption", { text: "Pixels per bin" }),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Bin" }), h("th", { scope: "col", text: "From" }), h("th", { scope: "col", text: "Pixels" }))),
        h(
          "tbody",
          {},
          histogram.counts.map((count, index) => {
            const from = histogram.low + ((histogram.high - histogram.low) * index) / histogram.counts.length;
            return h("tr", {}, h("td", { text: index + 1 }), h("td", { text: formatNumber(from) }), h("td", { text: formatNumber(count) }));
          }),
        ),
      ),
    ),
  );
  const logScale = h("input", { id: "histogram-log", type: "checkbox" });
  const figure = h(
    "figure",
    { class: "chart" },
    h("div", { class: "chart-options" }, logScale, h("label", { for: "histogram-log", text: "Logarithmic counts" })),
    canvas,
    h("figcaption", { text: "Histogram of the original pixel values" }),
    data,
  );
  // Drawn once the canvas is in the document and has a size.
  requestAnimationFrame(() => {
    const chart = drawHistogram(canvas, histogram);
    logScale.addEventListener("change", () => chart.setLog(logScale.checked));
    disposers.push(chart.dispose);
  });
  return figure;
}

// Patient-identifying attributes: the API sends them only to the instance's owner and to admins.
function patientSection(patient) {
  const date = patient.birth_date && /^\d{8}$/.test(patient.birth_date)
    ? `${patient.birth_date.slice(0, 4)}-${patient.birth_date.slice(4, 6)}-${patient.birth_date.slice(6)}`
    : patient.birth_date;
  return h(
    "section",
    { class: "patient", id: "patient", "aria-labelledby": "patient-title" },
    h("h2", { id: "patient-title", text: "Patient" }),
    facts([
      ["Name", patient.name],
      ["Patient ID", patient.id],
      ["Birth date", date],
    ]),
  );
}

async function download(id, deidentified, message) {
  try {
    const url = await apiObjectUrl(`/api/instances/${encodeURIComponent(id)}/file${deidentified ? "?deidentified=true" : ""}`);
    const link = h("a", { href: url, download: `${id}${deidentified ? "-deidentified" : ""}.dcm` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    replace(message, errorBox(error));
  }
}

export function render(view, [id], { feed, isCurrent }) {
  const disposers = [];
  const body = h("div", { "aria-busy": "true" });
  const statusCell = h("span", { id: "instance-status" });
  let shownStatus = null;

  function dispose() {
    while (disposers.length) disposers.pop()();
  }

  async function load() {
    try {
      const item = await api(`/api/instances/${encodeURIComponent(id)}`);
      if (!isCurrent()) return;
      dispose();
      shownStatus = item.status;
      replace(statusCell, statusBadge(item.status));
      const message = h("div");
      const parts = [
        facts([
          ["Status", statusCell],
          ["Reason", item.reason],
          ["File", item.file_name],
          ["Modality", item.modality || "–"],
          ["Size", formatBytes(item.size)],
          ["Received", formatDate(item.created_at)],
          ["Updated", formatDate(item.updated_at)],
          ["Study", h("span", { class: "mono", text: item.study_instance_uid })],
          ["Series", h("span", { class: "mono", text: item.series_instance_uid })],
          ["SOP instance", h("span", { class: "mono", text: item.sop_instance_uid })],
          ["Upload", h("a", { href: `#/uploads/${item.upload_id}`, text: item.upload_id })],
        ]),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "secondary", text: "Download original", onClick: () => download(id, false, message) }),
          h("button", { type: "button", class: "secondary", text: "Download de-identified", onClick: () => download(id, true, message) }),
        ),
        message,
      ];
      if (item.patient) parts.splice(1, 0, patientSection(item.patient));
      const result = item.result;
      if (result) parts.push(resultSection(id, result, disposers));
      else if (item.status !== "failed") parts.push(h("p", { class: "pending", text: "The result appears here as soon as processing is done." }));
      replace(body, ...parts);
    } catch (error) {
      replace(body, errorBox(error.status === 404 ? new Error("There is no such instance.") : error));
    } finally {
      body.setAttribute("aria-busy", "false");
    }
  }

  const onStatus = (event) => {
    const update = event.detail;
    if (update.instance_id !== id || update.status === shownStatus) return;
    replace(statusCell, statusBadge(update.status));
    announce(`This instance is now ${update.status}.`);
    if (update.status === "done" || update.status === "failed") load();
  };
  feed.addEventListener("status", onStatus);
  feed.addEventListener("ready", load);

  view.append(h("section", { class: "page instance" }, heading("Instance"), h("p", { class: "mono", text: id }), body));
  load();
  return () => {
    dispose();
    feed.removeEventListener("status", onStatus);
    feed.removeEventListener("ready", load);
  };
}

function resultSection(id, result, disposers) {
  const section = h("section", { class: "result", "aria-labelledby": "result-title" }, h("h2", { id: "result-title", text: "Result" }));
  if (!result.has_pixel_data) {
    section.append(h("p", { text: result.note || "This object has no pixel data." }));
    return section;
  }
  const preview = h("img", { id: "preview", class: "preview", alt: "Preview of the image (loading)" });
  const previewBox = h("figure", { class: "preview-box" }, preview, h("figcaption", { text: "Preview" }));
  apiObjectUrl(`/api/instances/${encodeURIComponent(id)}/preview.png`)
    .then((url) => {
      preview.src = url;
      preview.alt = `Preview of the image, ${result.columns} × ${result.rows} pixels`;
      disposers.push(() => URL.revokeObjectURL(url));
    })
    .catch((error) => previewBox.replaceChildren(errorBox(error)));
  section.append(
    h(
      "div",
      { class: "result-grid" },
      previewBox,
      h(
        "div",
        {},
        facts([
          ["Rows × columns", `${result.rows} × ${result.columns}`],
          ["Frames", result.frames],
          ["Samples per pixel", result.samples_per_pixel],
          ["Pixel type", result.dtype],
          ["Pixels", formatNumber(result.pixel_count)],
          ["Processing time", `${formatNumber(result.processing_ms, 4)} ms`],
          ["Worker", result.worker],
        ]),
        statisticsTable(result),
      ),
    ),
  );
  if (result.histogram && result.histogram.counts) section.append(histogramFigure(result.histogram, disposers));
  return section;
}
