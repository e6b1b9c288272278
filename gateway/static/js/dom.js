// Building the page from data without ever parsing data as HTML: every value becomes a text node.

/**
 * Create an element. `attrs` keys: `class`, `text`, `on<Event>` (listeners), `dataset` (object),
 * booleans (set when true), anything else as an attribute. Children: nodes, strings (as text), or null.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2).toLowerCase(), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `node` with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Say something to screen-reader users through the page's polite live region. */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A separate task so that the same message twice is still announced.
  setTimeout(() => {
    region.textContent = message;
  }, 30);
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function formatNumber(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  return Number.isInteger(number) ? number.toLocaleString() : number.toLocaleString(undefined, { maximumSignificantDigits: digits });
}

const RANKS = { received: 0, queued: 1, processing: 2, done: 3, failed: 3 };

/** Position of an instance status in its lifecycle (statuses only move forward; -1 for none). */
export function statusRank(status) {
  return status in RANKS ? RANKS[status] : -1;
}

/** A status badge; `data-status` carries the machine value that tests and styles use. */
export function statusBadge(status) {
  return h("span", { class: "badge", "data-status": status || "unknown", text: status || "–" });
}

/** A page heading that takes focus on navigation, so keyboard and screen-reader users land on it. */
export function heading(text) {
  return h("h1", { tabindex: "-1", text });
}

/** An inline error message for a failed action (role=alert is read out at once). */
export function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" }, h("p", { text: error.message || String(error) }));
  if (error.fields && error.fields.length) {
    box.append(h("ul", {}, error.fields.map((f) => h("li", { text: `${f.field}: ${f.message}` }))));
  }
  return box;
}

/** A table with a caption, header cells with scope and one row per item. `columns`: [{label, cell(item)}]. */
export function table(caption, columns, items, rowAttrs = () => ({})) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", { text: caption }),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c.label })))),
      h(
        "tbody",
        {},
        items.map((item) => h("tr", rowAttrs(item), columns.map((c) => h("td", { "data-label": c.label }, c.cell(item))))),
      ),
    ),
  );
}
