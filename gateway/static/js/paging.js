// One page of an API list at a time: the read, its error, and previous/next controls, the same on every list page.

import { api } from "./api.js";
import { errorBox, h, replace } from "./dom.js";

/** Previous/next paging controls for a {total, limit, offset} page; `go(offset)` shows another page. */
export function pager(page, go) {
  const from = page.total ? page.offset + 1 : 0;
  const to = Math.min(page.offset + page.items.length, page.total);
  const prev = h("button", { type: "button", class: "secondary", text: "Previous", disabled: page.offset <= 0 });
  const next = h("button", { type: "button", class: "secondary", text: "Next", disabled: to >= page.total });
  prev.addEventListener("click", () => go(Math.max(0, page.offset - page.limit)));
  next.addEventListener("click", () => go(page.offset + page.limit));
  return h("nav", { class: "pager", "aria-label": "Pages" }, prev, h("span", { text: `${from}–${to} of ${page.total}` }), next);
}

/**
 * Keep `results` showing one page of an API list. `url(offset)` is the page's address; `show(page)` gives
 * what `results` holds for it (a table, or a line saying there is nothing); the pager follows when the list
 * has more than one page, and a failed read shows its error instead. A page the user has left is not drawn.
 * `markBusy`: `aria-busy` on every read, not only the first (a list whose rows are replaced while shown).
 * `stepBack`: an empty page after the first (its last rows were deleted) shows the page before it.
 * Returns `load(offset)`: another page, or without an offset the page shown, read again.
 */
export function pagedList(results, { url, show, isCurrent, markBusy = false, stepBack = false }) {
  let offset = 0;

  async function load(at = offset) {
    offset = at;
    if (markBusy) results.setAttribute("aria-busy", "true");
    try {
      const page = await api(url(offset));
      if (!isCurrent()) return;
      if (stepBack && !page.items.length && offset > 0) return load(Math.max(0, offset - page.limit));
      replace(results, show(page));
      if (page.total > page.limit) results.append(pager(page, load));
    } catch (error) {
      replace(results, errorBox(error));
    } finally {
      results.setAttribute("aria-busy", "false");
    }
  }

  return load;
}
