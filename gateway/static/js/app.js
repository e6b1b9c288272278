// The portal's entry point: hash routing, the signed-in chrome (nav, live-feed state, log out).

import { api } from "./api.js";
import { announce, errorBox, h, replace } from "./dom.js";
import { LiveFeed } from "./feed.js";
import { clearSession, getSession, isAdmin } from "./session.js";

const ROUTES = [
  { pattern: /^\/login$/, page: "login", isPublic: true },
  { pattern: /^\/upload$/, page: "upload" },
  { pattern: /^\/uploads$/, page: "uploads" },
  { pattern: /^\/uploads\/([A-Za-z0-9_-]+)$/, page: "upload-detail" },
  { pattern: /^\/instances$/, page: "instances" },
  { pattern: /^\/instances\/([A-Za-z0-9_-]+)$/, page: "instance" },
  { pattern: /^\/studies$/, page: "studies" },
  { pattern: /^\/elements$/, page: "elements" },
  { pattern: /^\/audit$/, page: "audit", adminOnly: true },
  { pattern: /^\/workers$/, page: "workers", adminOnly: true },
  { pattern: /^\/account$/, page: "account" },
];

const FEED_LABELS = { live: "Live", connecting: "Connecting…", offline: "Offline" };

const feed = new LiveFeed();
const view = document.getElementById("view");
let cleanup = null;
let renderCount = 0;

function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/upload";
  const [path, search = ""] = raw.split("?");
  return { path, params: new URLSearchParams(search) };
}

function navigate(path) {
  if (window.location.hash === `#${path}`) route();
  else window.location.hash = `#${path}`;
}

function updateChrome() {
  const session = getSession();
  const signedIn = Boolean(session);
  // Until a reset password is changed, the change form is the only page the API serves.
  document.getElementById("nav").hidden = !signedIn || Boolean(session.mustChangePassword);
  document.getElementById("session").hidden = !signedIn;
  for (const item of document.querySelectorAll("[data-admin]")) item.hidden = !isAdmin();
  document.getElementById("who").textContent = signedIn ? `${session.email || session.user || ""}${isAdmin() ? " (admin)" : ""}` : "";
  const { path } = parseHash();
  for (const link of document.querySelectorAll("#nav a")) {
    const current = path === link.getAttribute("href").slice(1) || path.startsWith(`${link.getAttribute("href").slice(1)}/`);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  const { path, params } = parseHash();
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find(({ m }) => m);
  const session = getSession();
  if (!match) return navigate(session ? "/upload" : "/login");
  if (!match.r.isPublic && !session) return navigate("/login");
  if (match.r.isPublic && session) return navigate("/upload");
  const mustChange = Boolean(session && session.mustChangePassword);
  if (mustChange && match.r.page !== "account") return navigate("/account");
  if (session && !mustChange) feed.start();
  updateChrome();
  if (cleanup) cleanup();
  cleanup = null;
  const current = ++renderCount;
  if (match.r.adminOnly && !isAdmin()) {
    replace(view, h("h1", { tabindex: "-1", text: "Not available" }), h("p", { text: "This page is for administrators." }));
    view.querySelector("h1").focus();
    return;
  }
  try {
    const module = await import(`./pages/${match.r.page}.js`);
    if (current !== renderCount) return;
    const context = { feed, navigate, params, isCurrent: () => current === renderCount };
    replace(view);
    cleanup = (await module.render(view, match.m.slice(1), context)) || null;
  } catch (error) {
    if (current !== renderCount) return;
    replace(view, h("h1", { tabindex: "-1", text: "Something went wrong" }), errorBox(error));
  }
  const title = view.querySelector("h1");
  document.title = title ? `${title.textContent} · dicomflow` : "dicomflow";
  if (title && current === renderCount) title.focus();
}

function showFeedState(state) {
  const badge = document.getElementById("feed-state");
  badge.dataset.state = state;
  badge.textContent = FEED_LABELS[state] || state;
  badge.title = state === "live" ? "Status changes appear as they happen." : "Reconnecting to the live status feed.";
}

async function logout() {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch {
    // The token is forgotten here either way; a failed revocation only means it expires on its own.
  }
  endSession("You are logged out.");
}

function endSession(message) {
  feed.stop();
  clearSession();
  // Pages that keep state across navigations drop it, so the next user of this tab sees none of it.
  window.dispatchEvent(new CustomEvent("logged-out"));
  updateChrome();
  announce(message);
  navigate("/login");
}

feed.addEventListener("state", (event) => showFeedState(event.detail));
feed.addEventListener("unauthorized", () => endSession("Your session has ended; please log in again."));
window.addEventListener("session-ended", () => endSession("Your session has ended; please log in again."));
window.addEventListener("hashchange", route);
document.getElementById("logout").addEventListener("click", logout);
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  (view.querySelector("h1") || view).focus();
});
route();
