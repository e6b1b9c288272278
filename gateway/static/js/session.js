// The signed-in session: the bearer token lives in sessionStorage only (gone when the tab closes).

const KEY = "dicomflow.session";

/** The stored session {token, expiresAt, email, role, user} or null when absent or expired. */
export function getSession() {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return null;
  try {
    const session = JSON.parse(raw);
    if (!session.token || (session.expiresAt && Date.parse(session.expiresAt) <= Date.now())) {
      clearSession();
      return null;
    }
    return session;
  } catch {
    clearSession();
    return null;
  }
}

export function getToken() {
  const session = getSession();
  return session ? session.token : null;
}

export function saveSession(session) {
  sessionStorage.setItem(KEY, JSON.stringify(session));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

export function isAdmin() {
  const session = getSession();
  return Boolean(session && session.role === "admin");
}

/**
 * The claims of a JWT, read (not verified) only to show who is signed in; the server decides access.
 * Returns {} for a token that is not a JWT.
 */
export function readClaims(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return {};
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}
