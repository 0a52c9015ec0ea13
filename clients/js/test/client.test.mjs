// The built package against a gateway the Python test started (SCOUT_URL, SCOUT_API_KEY):
// the token exchange on the server side, then the browser client over a real WebSocket —
// per-chat callbacks, a dropped socket resumed, a question asked while offline.
// Node 20 has WebSocket behind --experimental-websocket (22 has it on by default).
import assert from "node:assert/strict";
import { test } from "node:test";

import { ScoutClient } from "../dist/index.js";
import { mintToken, TokenError } from "../dist/server.js";

const gateway = process.env.SCOUT_URL;
const apiKey = process.env.SCOUT_API_KEY;
const wsUrl = `${gateway.replace(/^http/, "ws")}/ws/chat`;
const client = () => new ScoutClient({
  url: wsUrl, minBackoffMs: 50,
  getToken: async () => (await mintToken({ gateway, apiKey })).token,
});

test("mintToken trades the API key for a short-lived token, and says why when it can't",
  async () => {
    const minted = await mintToken({ gateway, apiKey });
    assert.equal(typeof minted.token, "string");
    assert.ok(minted.expires_in > 0);
    await assert.rejects(mintToken({ gateway, apiKey: "not-a-key" }),
      (err) => err instanceof TokenError && err.status === 401);
  });

test("one chat: callbacks see the text stream in and who answered", async () => {
  const scout = client();
  await scout.connect();
  const pieces = [];
  let servedBy = null;
  const chat = scout.ask("Which hybrid SUV would you recommend? (client 1)", {
    onDelta: (text) => pieces.push(text),
    onDone: (event) => { servedBy = event.served_by; },
  });
  const done = await chat.done;
  assert.deepEqual(servedBy, ["onprem"]);
  assert.deepEqual(done.served_by, ["onprem"]);
  assert.ok(pieces.length > 3);
  assert.equal(pieces.join(""), chat.text);
  assert.match(chat.text, /^Based on what you described/);
  scout.close();
});

test("a socket dropped mid-answer reconnects and the answer is resumed whole", async () => {
  const scout = client();
  await scout.connect();
  let resets = 0;
  let dropped = false;
  const chat = scout.ask("Which hybrid SUV would you recommend? (client 2)", {
    onDelta: () => {
      if (!dropped) { dropped = true; scout.dropConnection(); }
    },
    onReset: () => { resets += 1; },
  });
  const done = await chat.done;
  assert.equal(resets, 1, "the answer was replayed once, from the start");
  assert.ok(scout.reconnects >= 1);
  assert.match(chat.text, /^Based on what you described/);
  assert.deepEqual(done.served_by, ["onprem"]);
  scout.close();
});

test("a question asked while offline is sent once connected", async () => {
  const scout = client();
  const chat = scout.ask("Which hybrid SUV would you recommend? (client 3)");
  assert.equal(scout.outbox.length, 1);
  await scout.connect();
  const done = await chat.done;
  assert.equal(scout.outbox.length, 0);
  assert.deepEqual(done.served_by, ["onprem"]);
  scout.close();
});
