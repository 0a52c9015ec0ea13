// Scout reference client for /ws/chat (protocol scout.v1). No framework, no build step:
// import it from the Vercel app or a plain page.
//
//   const scout = new ScoutClient({
//     url: "wss://scout.example.com/ws/chat",
//     getToken: async () => (await fetch("/api/scout-token")).json().then(j => j.token),
//   });
//   scout.addEventListener("delta", (e) => render(e.detail.id, e.detail.text));
//   scout.addEventListener("done", (e) => showServedBy(e.detail.id, e.detail.served_by));
//   scout.connect();
//   const id = scout.ask("Which hybrid SUV would you recommend?");
//
// getToken must return a short-lived token from POST /api/ws-token, obtained by your
// server (which holds the API key): never ship an API key to a browser.
//
// The client reconnects with exponential backoff and jitter. Chats that were still
// streaming when the socket dropped are resumed on reconnect: the server replays the
// answer from the start ("start" with resumed: true, then the text so far), so the
// client emits "reset" and the page redraws that answer from scratch. Questions asked
// while disconnected are sent once connected. Events (CustomEvent, detail = server
// message): hello, start, reset, delta, switch, done, error, going_away, status.

export const SUBPROTOCOL = "scout.v1";

export class ScoutClient extends EventTarget {
  constructor({ url, getToken, session = null, minBackoffMs = 250, maxBackoffMs = 10000 }) {
    super();
    this.url = url;
    this.getToken = getToken;
    this.session = session;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.ws = null;
    this.state = "idle"; // idle | connecting | open | reconnecting | closed
    this.attempt = 0;
    this.reconnects = 0;
    this.chats = new Map(); // id -> { message, text, done }
    this.outbox = [];
    this._closing = false;
    this._timer = null;
  }

  async connect() {
    this._closing = false;
    this._setState(this.reconnects ? "reconnecting" : "connecting");
    let token;
    try {
      token = await this.getToken();
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    const ws = new WebSocket(this.url, [SUBPROTOCOL, `bearer.${token}`]);
    this.ws = ws;
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this._closing) {
        this._setState("closed");
        return;
      }
      this._emit("status", { state: "disconnected", code: ev.code, reason: ev.reason });
      this._scheduleReconnect(ev.code === 1001 ? 0 : undefined);
    };
  }

  ask(message, id = `m${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`) {
    this.chats.set(id, { message, text: "", done: false });
    this._send({ type: "chat", id, message, ...(this.session ? { session: this.session } : {}) });
    return id;
  }

  close() {
    this._closing = true;
    clearTimeout(this._timer);
    if (this.ws) this.ws.close(1000, "client closed");
  }

  // Test hook: drop the socket as a flaky network would (the client reconnects and resumes).
  _dropForTest() {
    if (this.ws) this.ws.close(4000, "dropped for test");
  }

  _send(msg) {
    if (this.ws && this.state === "open") {
      this.ws.send(JSON.stringify(msg));
      const chat = this.chats.get(msg.id);
      if (chat && msg.type === "chat") chat.sent = true;
    } else {
      this.outbox.push(msg);
    }
  }

  _scheduleReconnect(delayMs) {
    this._setState("reconnecting");
    const backoff = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this.attempt);
    const wait = delayMs ?? backoff / 2 + Math.random() * (backoff / 2);
    this.attempt += 1;
    this.reconnects += 1;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.connect(), wait);
  }

  _onHello(msg) {
    this.attempt = 0;
    this._setState("open");
    this._emit("hello", msg);
    // Resume whatever was streaming when the socket dropped, then send what queued up.
    for (const [id, chat] of this.chats) {
      if (chat.done) continue;
      if (chat.started && this.session) {
        this.ws.send(JSON.stringify({ type: "resume", id, session: this.session }));
      } else if (chat.sent) {  // lost before the server said start: ask again
        this.ws.send(JSON.stringify({ type: "chat", id, message: chat.message,
                                      ...(this.session ? { session: this.session } : {}) }));
      }
    }
    for (const msg of this.outbox.splice(0)) {
      if (msg.type === "chat" && !msg.session && this.session) msg.session = this.session;
      this._send(msg);
    }
  }

  _onMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.type === "hello") return this._onHello(msg);
    const chat = msg.id ? this.chats.get(msg.id) : undefined;
    switch (msg.type) {
      case "start":
        if (msg.session) this.session = msg.session;
        if (chat) {
          chat.started = true;
          if (msg.resumed) {
            chat.text = "";
            this._emit("reset", msg);
          }
        }
        break;
      case "delta":
        if (chat) chat.text += msg.text;
        break;
      case "done":
        if (chat) chat.done = true;
        break;
      case "error":
        // A chat that lost its stream (slow_consumer) can be resumed; others are final.
        if (chat && msg.code === "slow_consumer" && this.session) {
          this._send({ type: "resume", id: msg.id, session: this.session });
          return;
        }
        if (chat) chat.done = true;
        break;
    }
    this._emit(msg.type, msg);
  }

  _setState(state) {
    this.state = state;
    this._emit("status", { state, reconnects: this.reconnects });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
