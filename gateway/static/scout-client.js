// Scout gateway client for /ws/chat (protocol scout.v1), for browsers.
//
//   import { ScoutClient } from "scout-gateway-client";
//   const scout = new ScoutClient({
//     url: "wss://scout.example.com/ws/chat",
//     getToken: async () => (await (await fetch("/api/scout-token", { method: "POST" })).json()).token,
//   });
//   scout.connect();
//   const chat = scout.ask("Which hybrid SUV would you recommend?", {
//     onDelta: (text) => render(text),
//     onSwitch: (e) => note(`${e.from} → ${e.to} (${e.kind})`),
//     onDone: (e) => showServedBy(e.served_by),
//   });
//   await chat.done;
//
// getToken must return a short-lived token from POST /api/ws-token, obtained by your
// server, which holds the API key (see "scout-gateway-client/server"): never ship an API
// key to a browser.
//
// The client reconnects with exponential backoff and jitter. Chats still streaming when
// the socket dropped are resumed on reconnect: the gateway replays the answer from the
// start ("start" with resumed: true, then the text so far), so the chat's onReset fires
// and its text starts again. Questions asked while disconnected wait in a queue and are
// sent once connected. Every server message is also dispatched as a CustomEvent (detail =
// the message): hello, start, reset, delta, switch, done, error, going_away, status.
export const SUBPROTOCOL = "scout.v1";
export class ScoutClient extends EventTarget {
    url;
    getToken;
    session;
    minBackoffMs;
    maxBackoffMs;
    ws = null;
    state = "idle";
    attempt = 0;
    reconnects = 0;
    chats = new Map();
    outbox = [];
    closing = false;
    timer;
    constructor({ url, getToken, session = null, minBackoffMs = 250, maxBackoffMs = 10000 }) {
        super();
        this.url = url;
        this.getToken = getToken;
        this.session = session;
        this.minBackoffMs = minBackoffMs;
        this.maxBackoffMs = maxBackoffMs;
    }
    async connect() {
        this.closing = false;
        this.setState(this.reconnects ? "reconnecting" : "connecting");
        let token;
        try {
            token = await this.getToken();
        }
        catch {
            this.scheduleReconnect();
            return;
        }
        const ws = new WebSocket(this.url, [SUBPROTOCOL, `bearer.${token}`]);
        this.ws = ws;
        ws.onmessage = (ev) => this.onMessage(String(ev.data));
        ws.onclose = (ev) => {
            if (this.ws !== ws)
                return;
            this.ws = null;
            if (this.closing) {
                this.setState("closed");
                return;
            }
            this.emit("status", { state: "disconnected", code: ev.code, reason: ev.reason });
            this.scheduleReconnect(ev.code === 1001 ? 0 : undefined);
        };
    }
    /** Ask a question; the answer arrives through `handlers` and the returned chat. */
    ask(message, handlers = {}, id = `m${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`) {
        let settle;
        let fail;
        const done = new Promise((resolve, reject) => {
            settle = resolve;
            fail = reject;
        });
        done.catch(() => undefined); // a chat nobody awaits must not become an unhandled rejection
        const state = { message, text: "", done: false, handlers, settle, fail };
        this.chats.set(id, state);
        this.send({ type: "chat", id, message, ...(this.session ? { session: this.session } : {}) });
        return { id, done, get text() { return state.text; } };
    }
    close() {
        this.closing = true;
        clearTimeout(this.timer);
        if (this.ws)
            this.ws.close(1000, "client closed");
    }
    /** Drop the socket as a flaky network would (the client reconnects and resumes). */
    dropConnection() {
        if (this.ws)
            this.ws.close(4000, "dropped");
    }
    send(msg) {
        if (this.ws && this.state === "open") {
            this.ws.send(JSON.stringify(msg));
            const chat = this.chats.get(msg.id);
            if (chat && msg.type === "chat")
                chat.sent = true;
        }
        else {
            this.outbox.push(msg);
        }
    }
    scheduleReconnect(delayMs) {
        this.setState("reconnecting");
        const backoff = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this.attempt);
        const wait = delayMs ?? backoff / 2 + Math.random() * (backoff / 2);
        this.attempt += 1;
        this.reconnects += 1;
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.connect(), wait);
    }
    onHello(msg) {
        this.attempt = 0;
        this.setState("open");
        this.emit("hello", msg);
        const ws = this.ws;
        if (!ws)
            return;
        // Resume whatever was streaming when the socket dropped, then send what queued up.
        for (const [id, chat] of this.chats) {
            if (chat.done)
                continue;
            if (chat.started && this.session) {
                ws.send(JSON.stringify({ type: "resume", id, session: this.session }));
            }
            else if (chat.sent) { // lost before the server said start: ask again
                ws.send(JSON.stringify({ type: "chat", id, message: chat.message,
                    ...(this.session ? { session: this.session } : {}) }));
            }
        }
        for (const msg of this.outbox.splice(0)) {
            if (msg.type === "chat" && !msg.session && this.session)
                msg.session = this.session;
            this.send(msg);
        }
    }
    onMessage(raw) {
        let msg;
        try {
            msg = JSON.parse(raw);
        }
        catch {
            return;
        }
        if (msg.type === "hello")
            return this.onHello(msg);
        const chat = "id" in msg && msg.id ? this.chats.get(msg.id) : undefined;
        const on = chat?.handlers ?? {};
        switch (msg.type) {
            case "start":
                if (msg.session)
                    this.session = msg.session;
                if (chat) {
                    chat.started = true;
                    if (msg.resumed) {
                        chat.text = "";
                        this.emit("reset", msg);
                        on.onReset?.(msg);
                    }
                    else {
                        on.onStart?.(msg);
                    }
                }
                break;
            case "delta":
                if (chat) {
                    chat.text += msg.text;
                    on.onDelta?.(msg.text, chat.text, msg);
                }
                break;
            case "switch":
                if (chat && typeof msg.replace === "string")
                    chat.text = msg.replace;
                on.onSwitch?.(msg);
                break;
            case "done":
                if (chat) {
                    chat.done = true;
                    on.onDone?.(msg, chat.text);
                    chat.settle(msg);
                }
                break;
            case "error":
                // A chat that lost its stream (slow_consumer) can be resumed; others are final.
                if (chat && msg.code === "slow_consumer" && this.session) {
                    this.send({ type: "resume", id: msg.id, session: this.session });
                    return;
                }
                if (chat) {
                    chat.done = true;
                    on.onError?.(msg);
                    chat.fail(msg);
                }
                break;
        }
        this.emit(msg.type, msg);
    }
    setState(state) {
        this.state = state;
        this.emit("status", { state, reconnects: this.reconnects });
    }
    emit(type, detail) {
        this.dispatchEvent(new CustomEvent(type, { detail }));
    }
}
