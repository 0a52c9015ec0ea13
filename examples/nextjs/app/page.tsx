"use client";
// The chat page: the WebSocket client package, with the token from this app's own server.
// Each answer streams in, says who answered (served_by) and any switch between tiers, and
// survives a dropped connection (the client reconnects and the answer is replayed whole).
import { useEffect, useRef, useState, type FormEvent } from "react";
import { ScoutClient, type SwitchEvent } from "scout-gateway-client";

type Turn = { id: string; question: string; answer: string; servedBy?: string[];
              switches: string[]; resumed: number; error?: string };

async function token(): Promise<{ token: string; url: string }> {
  const resp = await fetch("/api/scout-token", { method: "POST" });
  if (!resp.ok) throw new Error(`token route answered ${resp.status}`);
  return resp.json();
}

export default function Chat() {
  const client = useRef<ScoutClient | null>(null);
  const [status, setStatus] = useState("connecting");
  const [reconnects, setReconnects] = useState(0);
  const [turns, setTurns] = useState<Turn[]>([]);

  useEffect(() => {
    let scout: ScoutClient | null = null;
    let closed = false;
    token().then(({ token: first, url }) => {
      if (closed) return;
      let spare: string | null = first;   // the first token came with the URL
      scout = new ScoutClient({ url, getToken: async () => {
        const t = spare ?? (await token()).token;
        spare = null;
        return t;
      } });
      scout.addEventListener("status", (e) => {
        const d = (e as CustomEvent).detail;
        setStatus(d.state === "open" ? "connected" : d.state);
        setReconnects(scout?.reconnects ?? 0);
      });
      client.current = scout;
      (window as unknown as { scout: ScoutClient }).scout = scout;
      void scout.connect();
    }).catch((err) => setStatus(`error: ${err.message}`));
    return () => { closed = true; scout?.close(); };
  }, []);

  function update(id: string, change: (t: Turn) => Turn) {
    setTurns((all) => all.map((t) => (t.id === id ? change(t) : t)));
  }

  function ask(ev: FormEvent<HTMLFormElement>) {
    ev.preventDefault();
    const form = ev.currentTarget;
    const input = form.elements.namedItem("q") as HTMLInputElement;
    const question = input.value.trim();
    if (!question || !client.current) return;
    input.value = "";
    const chat = client.current.ask(question, {
      onDelta: (_piece, answer) => update(chat.id, (t) => ({ ...t, answer })),
      onReset: () => update(chat.id, (t) => ({ ...t, answer: "", resumed: t.resumed + 1 })),
      onSwitch: (e: SwitchEvent) => update(chat.id, (t) => ({
        ...t, switches: [...t.switches, `${e.from} → ${e.to} (${e.kind})`] })),
      onDone: (e, answer) => update(chat.id, (t) => ({ ...t, answer, servedBy: e.served_by })),
      onError: (e) => update(chat.id, (t) => ({ ...t, error: e.message })),
    });
    setTurns((all) => [...all, { id: chat.id, question, answer: "", switches: [], resumed: 0 }]);
  }

  return (
    <main style={{ maxWidth: 760, margin: "0 auto", padding: 16 }}>
      <header style={{ display: "flex", justifyContent: "space-between", alignItems: "baseline" }}>
        <h1 style={{ fontSize: 20 }}>Scout · Lakeside Motors</h1>
        <span id="status" data-state={status} data-reconnects={reconnects}>
          {status}{reconnects ? ` · reconnected ${reconnects}×` : ""}
        </span>
      </header>
      {turns.map((t) => (
        <section key={t.id} data-chat={t.id} data-served-by={t.servedBy?.join(",") ?? ""}
                 data-resumed={t.resumed} style={{ margin: "12px 0" }}>
          <p style={{ textAlign: "right", margin: 4 }}><b>{t.question}</b></p>
          <div className="answer" style={{ background: "#fff", border: "1px solid #d0d7de",
                                            borderRadius: 8, padding: "8px 12px" }}>
            {t.answer || "…"}
            <div style={{ fontSize: 12, color: "#59636e", marginTop: 6 }}>
              {t.switches.map((s) => <span key={s} className="switch">↪ {s} · </span>)}
              {t.resumed ? <span className="resumed">resumed after a dropped connection · </span> : null}
              {t.servedBy ? <span className="served-by">served by {t.servedBy.join(" → ")}</span>
                          : t.error ? <span className="error">error: {t.error}</span> : "answering…"}
            </div>
          </div>
        </section>
      ))}
      <form onSubmit={ask} style={{ display: "flex", gap: 8 }}>
        <input name="q" aria-label="Your question" autoComplete="off" style={{ flex: 1, padding: 8 }}
               placeholder="Ask about a car, our stock, or a test drive…" />
        <button>Send</button>
      </form>
      <p style={{ fontSize: 12, color: "#59636e" }}>
        This page talks to the gateway over a WebSocket. <a href="/ai">The same question over
        the AI SDK (HTTP)</a>.
      </p>
    </main>
  );
}
