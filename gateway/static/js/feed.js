// The live status feed: one WebSocket to /api/events, authenticated by its first message (the token
// never goes into a URL), reconnecting with backoff. Pages listen for "status" and "ready" events.

import { getToken } from "./session.js";

const AUTH_FAILED = 4401;
const MAX_BACKOFF_MS = 30000;

export class LiveFeed extends EventTarget {
  constructor() {
    super();
    this.socket = null;
    this.state = "offline";
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    if (!this.socket) this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "logged out");
    this.socket = null;
    this.setState("offline");
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  connect() {
    const token = getToken();
    if (!token || this.stopped) return;
    this.setState("connecting");
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${window.location.host}/api/events`);
    this.socket = socket;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token })));
    socket.addEventListener("message", (message) => this.receive(message));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.setState("offline");
      if (event.code === AUTH_FAILED) {
        this.dispatchEvent(new CustomEvent("unauthorized"));
        return;
      }
      if (!this.stopped) this.reconnectLater();
    });
  }

  receive(message) {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (data.type === "ready") {
      this.attempt = 0;
      this.setState("live");
      // Events may have been missed while disconnected: listeners re-read what they show.
      this.dispatchEvent(new CustomEvent("ready", { detail: data }));
    } else if (data.type === "status") {
      this.dispatchEvent(new CustomEvent("status", { detail: data.event }));
    }
  }

  reconnectLater() {
    const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt);
    this.attempt += 1;
    const delay = backoff / 2 + Math.random() * (backoff / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
