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

/** How a tier change happened: for code to act on (the reason is for people). */
export type SwitchKind =
  "failed" | "headers_deadline" | "hedge" | "stalled" | "dropped" | "restart";

export interface HelloEvent {
  type: "hello";
  protocol: number;
  max_in_flight: number;
  heartbeat_s: number;
  [extra: string]: unknown;
}

export interface StartEvent {
  type: "start";
  id: string;
  intent: string;
  tier: string;
  session?: string;
  resumed?: boolean;
  skipped?: { tier: string; reason: string }[];
}

export interface DeltaEvent {
  type: "delta";
  id: string;
  text: string;
  tier?: string;
}

export interface SwitchEvent {
  type: "switch";
  id: string;
  from: string;
  to: string;
  kind: SwitchKind;
  reason: string;
  /** A restart: the answer so far is this text now (the tier that took over began anew). */
  replace?: string;
}

export interface DoneEvent {
  type: "done";
  id: string;
  intent: string;
  served_by: string[];
  models: string[];
  ttft_ms: number | null;
  total_ms: number;
  tokens: { prompt: number; completion: number };
  cost_usd: number;
  cached: string | false;
  finish_reason: string;
}

export interface ErrorEvent {
  type: "error";
  id?: string;
  code: string;
  message: string;
}

export interface GoingAwayEvent {
  type: "going_away";
  [extra: string]: unknown;
}

export type ServerEvent =
  | HelloEvent | StartEvent | DeltaEvent | SwitchEvent | DoneEvent | ErrorEvent | GoingAwayEvent;

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface StatusEvent {
  state: ConnectionState | "disconnected";
  reconnects?: number;
  code?: number;
  reason?: string;
}

/** Callbacks for one chat; each is optional. */
export interface ChatHandlers {
  onStart?: (event: StartEvent) => void;
  /** `text` is this piece; `answer` the whole answer so far. */
  onDelta?: (text: string, answer: string, event: DeltaEvent) => void;
  onSwitch?: (event: SwitchEvent) => void;
  /** The answer is being replayed from the start after a reconnect: clear what you drew. */
  onReset?: (event: StartEvent) => void;
  onDone?: (event: DoneEvent, answer: string) => void;
  onError?: (event: ErrorEvent) => void;
}

export interface Chat {
  id: string;
  /** Settles with the `done` event, or rejects with the `error` event. */
  done: Promise<DoneEvent>;
  /** The answer so far. */
  readonly text: string;
}

export interface ScoutClientOptions {
  /** wss://…/ws/chat */
  url: string;
  /** A fresh token from POST /api/ws-token, fetched through your own server. */
  getToken: () => Promise<string>;
  /** A session id from an earlier start event, to continue that conversation. */
  session?: string | null;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

interface ChatState {
  message: string;
  text: string;
  done: boolean;
  sent?: boolean;
  started?: boolean;
  handlers: ChatHandlers;
  settle: (event: DoneEvent) => void;
  fail: (event: ErrorEvent) => void;
}

type Outgoing = { type: "chat"; id: string; message: string; session?: string }
  | { type: "resume"; id: string; session: string };

export class ScoutClient extends EventTarget {
  url: string;
  getToken: () => Promise<string>;
  session: string | null;
  minBackoffMs: number;
  maxBackoffMs: number;
  ws: WebSocket | null = null;
  state: ConnectionState = "idle";
  attempt = 0;
  reconnects = 0;
  chats = new Map<string, ChatState>();
  outbox: Outgoing[] = [];
  private closing = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor({ url, getToken, session = null, minBackoffMs = 250,
                maxBackoffMs = 10000 }: ScoutClientOptions) {
    super();
    this.url = url;
    this.getToken = getToken;
    this.session = session;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
  }

  async connect(): Promise<void> {
    this.closing = false;
    this.setState(this.reconnects ? "reconnecting" : "connecting");
    let token: string;
    try {
      token = await this.getToken();
    } catch {
      this.scheduleReconnect();
      return;
    }
    const ws = new WebSocket(this.url, [SUBPROTOCOL, `bearer.${token}`]);
    this.ws = ws;
    ws.onmessage = (ev) => this.onMessage(String(ev.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
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
  ask(message: string, handlers: ChatHandlers = {},
      id = `m${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`): Chat {
    let settle!: (event: DoneEvent) => void;
    let fail!: (event: ErrorEvent) => void;
    const done = new Promise<DoneEvent>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    done.catch(() => undefined);   // a chat nobody awaits must not become an unhandled rejection
    const state: ChatState = { message, text: "", done: false, handlers, settle, fail };
    this.chats.set(id, state);
    this.send({ type: "chat", id, message, ...(this.session ? { session: this.session } : {}) });
    return { id, done, get text() { return state.text; } };
  }

  close(): void {
    this.closing = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "client closed");
  }

  /** Drop the socket as a flaky network would (the client reconnects and resumes). */
  dropConnection(): void {
    if (this.ws) this.ws.close(4000, "dropped");
  }

  private send(msg: Outgoing): void {
    if (this.ws && this.state === "open") {
      this.ws.send(JSON.stringify(msg));
      const chat = this.chats.get(msg.id);
      if (chat && msg.type === "chat") chat.sent = true;
    } else {
      this.outbox.push(msg);
    }
  }

  private scheduleReconnect(delayMs?: number): void {
    this.setState("reconnecting");
    const backoff = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this.attempt);
    const wait = delayMs ?? backoff / 2 + Math.random() * (backoff / 2);
    this.attempt += 1;
    this.reconnects += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), wait);
  }

  private onHello(msg: HelloEvent): void {
    this.attempt = 0;
    this.setState("open");
    this.emit("hello", msg);
    const ws = this.ws;
    if (!ws) return;
    // Resume whatever was streaming when the socket dropped, then send what queued up.
    for (const [id, chat] of this.chats) {
      if (chat.done) continue;
      if (chat.started && this.session) {
        ws.send(JSON.stringify({ type: "resume", id, session: this.session }));
      } else if (chat.sent) {  // lost before the server said start: ask again
        ws.send(JSON.stringify({ type: "chat", id, message: chat.message,
                                 ...(this.session ? { session: this.session } : {}) }));
      }
    }
    for (const msg of this.outbox.splice(0)) {
      if (msg.type === "chat" && !msg.session && this.session) msg.session = this.session;
      this.send(msg);
    }
  }

  private onMessage(raw: string): void {
    let msg: ServerEvent;
    try {
      msg = JSON.parse(raw) as ServerEvent;
    } catch {
      return;
    }
    if (msg.type === "hello") return this.onHello(msg);
    const chat = "id" in msg && msg.id ? this.chats.get(msg.id as string) : undefined;
    const on = chat?.handlers ?? {};
    switch (msg.type) {
      case "start":
        if (msg.session) this.session = msg.session;
        if (chat) {
          chat.started = true;
          if (msg.resumed) {
            chat.text = "";
            this.emit("reset", msg);
            on.onReset?.(msg);
          } else {
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
        if (chat && typeof msg.replace === "string") chat.text = msg.replace;
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
          this.send({ type: "resume", id: msg.id as string, session: this.session });
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

  private setState(state: ConnectionState): void {
    this.state = state;
    this.emit("status", { state, reconnects: this.reconnects });
  }

  private emit(type: string, detail: unknown): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
