"use client";
// The AI SDK path: this app's /api/chat route runs streamText through the gateway's
// /v1/responses; the page reads the text stream as it comes.
import { useState, type FormEvent } from "react";

export default function AiSdk() {
  const [answer, setAnswer] = useState("");

  async function ask(ev: FormEvent<HTMLFormElement>) {
    ev.preventDefault();
    const prompt = (ev.currentTarget.elements.namedItem("q") as HTMLInputElement).value;
    setAnswer("");
    const resp = await fetch("/api/chat", { method: "POST", body: JSON.stringify({ prompt }),
                                            headers: { "Content-Type": "application/json" } });
    const reader = resp.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      setAnswer((a) => a + r.value);
    }
  }

  return (
    <main style={{ maxWidth: 760, margin: "0 auto", padding: 16 }}>
      <h1 style={{ fontSize: 20 }}>Scout over the AI SDK</h1>
      <form onSubmit={ask} style={{ display: "flex", gap: 8 }}>
        <input name="q" aria-label="Your question" style={{ flex: 1, padding: 8 }} />
        <button>Ask</button>
      </form>
      <p id="answer">{answer}</p>
    </main>
  );
}
