// The elements API: list with paging and a device filter, create from a JSON file, rename, delete.

import { api, query } from "../api.js";
import { announce, errorBox, formatDate, formatNumber, h, heading, replace } from "../dom.js";
import { pagedList } from "../paging.js";

const LIMIT = 20;

export function render(view, _params, { isCurrent }) {
  let deviceName = "";
  const results = h("div", { id: "elements-results", "aria-busy": "true" });
  const message = h("div", { class: "form-status" });
  const load = pagedList(results, {
    url: (offset) => `/api/elements/${query({ limit: LIMIT, offset, device_name: deviceName })}`,
    show: (page) => (page.items.length ? elementTable(page.items) : h("p", { text: "No elements." })),
    isCurrent,
    stepBack: true,
  });

  function done(text) {
    // Shown here, read out by the page's live region (one announcement, not two).
    replace(message, h("p", { class: "success", text }));
    announce(text);
    load();
  }

  function fail(error) {
    replace(message, errorBox(error));
  }

  function elementTable(items) {
    const rows = items.map((element) => {
      const tr = h("tr", { dataset: { element: element.id } });
      const actions = h(
        "td",
        { "data-label": "Actions" },
        h(
          "div",
          { class: "row-actions" },
          h("button", { type: "button", class: "secondary", text: "Rename", "aria-label": `Rename ${element.id}`, onClick: () => editRow(tr, element) }),
          h("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${element.id}`, onClick: () => remove(element) }),
        ),
      );
      tr.append(
        h("td", { "data-label": "Id", class: "mono", text: element.id }),
        h("td", { "data-label": "Device", text: element.device_name }),
        h("td", { "data-label": "Average before", text: formatNumber(element.average_before, 6) }),
        h("td", { "data-label": "Average after", text: formatNumber(element.average_after, 6) }),
        h("td", { "data-label": "Values", text: formatNumber(element.data_size) }),
        h("td", { "data-label": "Updated", text: formatDate(element.updated_at) }),
        actions,
      );
      return tr;
    });
    return h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "elements-table" },
        h("caption", { text: "Elements" }),
        h(
          "thead",
          {},
          h("tr", {}, ["Id", "Device", "Average before", "Average after", "Values", "Updated", "Actions"].map((l) => h("th", { scope: "col", text: l }))),
        ),
        h("tbody", {}, rows),
      ),
    );
  }

  function editRow(tr, element) {
    const idInput = h("input", { id: `rename-id-${element.id}`, name: "id", value: element.id, required: true, pattern: "[A-Za-z0-9_-]{1,64}" });
    const deviceInput = h("input", { id: `rename-device-${element.id}`, name: "device_name", value: element.device_name, required: true });
    const cancel = h("button", { type: "button", class: "secondary", text: "Cancel", onClick: () => load() });
    const form = h(
      "form",
      { class: "inline-form", "aria-label": `Rename ${element.id}` },
      h("label", { for: idInput.id, text: "New id" }),
      idInput,
      h("label", { for: deviceInput.id, text: "Device" }),
      deviceInput,
      h("button", { type: "submit", text: "Save" }),
      cancel,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const change = {};
      if (idInput.value !== element.id) change.id = idInput.value;
      if (deviceInput.value !== element.device_name) change.device_name = deviceInput.value;
      if (!Object.keys(change).length) return load();
      try {
        await api(itemPath(element), { method: "PATCH", json: change });
        done(`Element ${element.id} saved.`);
      } catch (error) {
        fail(error);
      }
    });
    tr.replaceChildren(h("td", { colspan: "7" }, form));
    idInput.focus();
  }

  // Ids are unique per owner: naming the owner keeps an admin's change on the element shown.
  const itemPath = (element) =>
    `/api/elements/${encodeURIComponent(element.id)}/${query({ owner: element.owner })}`;

  async function remove(element) {
    if (!window.confirm(`Delete element ${element.id}?`)) return;
    try {
      await api(itemPath(element), { method: "DELETE" });
      done(`Element ${element.id} deleted.`);
    } catch (error) {
      fail(error);
    }
  }

  const fileInput = h("input", { id: "elements-file", type: "file", accept: ".json,application/json" });
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files[0];
    if (!file) return;
    try {
      const created = await api("/api/elements/", { method: "POST", body: await file.text(), contentType: "application/json" });
      const count = created && typeof created === "object" && !("id" in created) ? Object.keys(created).length : 1;
      done(`${count} element(s) created from ${file.name}.`);
    } catch (error) {
      fail(error);
    } finally {
      fileInput.value = "";
    }
  });
  const device = h("input", { id: "elements-device", type: "search", name: "device_name" });
  const filter = h(
    "form",
    { class: "toolbar", role: "search" },
    h("label", { for: "elements-device", text: "Device" }),
    device,
    h("button", { type: "submit", class: "secondary", text: "Filter" }),
  );
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    deviceName = device.value.trim();
    load(0);
  });

  view.append(
    h(
      "section",
      { class: "page elements" },
      heading("Elements"),
      h("div", { class: "toolbar" }, h("label", { for: "elements-file", text: "Create from a JSON file" }), fileInput),
      filter,
      message,
      results,
    ),
  );
  load();
  return null;
}
