// Talking to the gateway: bearer token on every call, problem+json errors turned into ApiError.

import { clearSession, getToken } from "./session.js";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `Request failed (${status})`);
    this.status = status;
    this.problem = problem;
    this.fields = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

/** The session ended on the server (expired or revoked): forget it and go to the login page. */
function sessionEnded() {
  clearSession();
  window.dispatchEvent(new CustomEvent("session-ended"));
}

async function problemOf(response) {
  try {
    const body = await response.json();
    return body && typeof body === "object" ? body : { detail: String(body) };
  } catch {
    return { title: response.statusText || `HTTP ${response.status}` };
  }
}

/**
 * Call the API. `json` sends a JSON body; `body` + `contentType` send anything else.
 * Resolves with the parsed JSON (or null for 204); rejects with ApiError.
 */
export async function api(path, { method = "GET", json, body, contentType, signal } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  let payload = body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, signal, credentials: "omit" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { title: "The server cannot be reached; check your connection and try again." });
  }
  if (response.status === 401 && path !== "/api/auth/login") sessionEnded();
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** Fetch a binary resource (e.g. a preview PNG) with the token, as an object URL the caller revokes. */
export async function apiObjectUrl(path, { signal } = {}) {
  const response = await fetch(path, { headers: authHeaders(), signal, credentials: "omit" });
  if (response.status === 401) sessionEnded();
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return URL.createObjectURL(await response.blob());
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * Send `files` ([{file, name}]) as one multipart/form-data upload with XMLHttpRequest, which (unlike
 * fetch) reports upload progress. `onProgress(loaded, total)` gets bytes sent. Resolves with the 202 body.
 * Returns {promise, abort}.
 */
export function uploadFiles(files, { onProgress = () => {}, field = "file" } = {}) {
  const xhr = new XMLHttpRequest();
  const form = new FormData();
  for (const { file, name } of files) form.append(field, file, name);
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", "/api/uploads");
    const token = getToken();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      const body = xhr.response && typeof xhr.response === "object" ? xhr.response : { detail: xhr.statusText };
      if (xhr.status === 401) sessionEnded();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { title: "The upload was interrupted (network error)." })));
    xhr.addEventListener("abort", () => reject(new ApiError(0, { title: "The upload was cancelled." })));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
