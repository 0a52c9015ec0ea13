// The Vercel AI SDK (`ai`, `@ai-sdk/openai`) against a gateway the Python test started:
// SCOUT_URL and SCOUT_API_KEY say where. Each call asserts the streamed text and who
// answered (served_by), the way a Next.js route handler would read them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, Output, streamText } from "ai";
import { z } from "zod";

const scout = createOpenAI({
  baseURL: `${process.env.SCOUT_URL}/v1`,
  apiKey: process.env.SCOUT_API_KEY,
});
// Each test asks its own question: a repeated one would be a cache hit (served_by cache).
const ask = (tag) => `Which hybrid SUV would you recommend for a family of five? (${tag})`;
const ANSWER = /^Based on what you described/;

// Who answered, from the stream's raw chunks: the final event carries served_by.
async function drain(result) {
  let text = "";
  let servedBy = null;
  for await (const part of result.fullStream) {
    if (part.type === "text-delta") text += part.text;
    if (part.type === "error") throw part.error;
    if (part.type !== "raw") continue;
    const raw = part.rawValue;
    if (raw?.type === "response.completed") servedBy = raw.response.served_by;
    if (raw?.choices?.[0]?.finish_reason) servedBy = raw.served_by;
  }
  return { text, servedBy };
}

test("streamText with the default provider: /v1/responses", async () => {
  const result = streamText({ model: scout("scout"), prompt: ask("q1"), includeRawChunks: true });
  const { text, servedBy } = await drain(result);
  assert.match(text, ANSWER);
  assert.deepEqual(servedBy, ["onprem"]);
  // The stream starts before any tier answers: it names the routed model, "scout".
  assert.equal((await result.response).modelId, "scout");
});

test("streamText with .chat(): /v1/chat/completions", async () => {
  const result = streamText({ model: scout.chat("scout"), prompt: ask("q2"),
                              includeRawChunks: true });
  const { text, servedBy } = await drain(result);
  assert.match(text, ANSWER);
  assert.deepEqual(servedBy, ["onprem"]);
});

test("generateText: the answer and the X-Scout-Served-By header", async () => {
  const result = await generateText({ model: scout("scout"), prompt: ask("q3") });
  assert.match(result.text, ANSWER);
  assert.equal(result.response.headers["x-scout-served-by"], "onprem");
  assert.ok(result.usage.outputTokens > 0);
});

test("a pinned tier: generateText through OpenAI", async () => {
  const result = await generateText({ model: scout("scout/openai"), prompt: ask("q4") });
  assert.equal(result.response.headers["x-scout-served-by"], "openai");
  assert.equal(result.response.modelId, "gpt-4o-mini");
});

const Pick = z.object({ model: z.string(), seats: z.number().int() });

test("generateObject with a zod schema: json_schema reaches a tier that honours it", async () => {
  const result = await generateObject({ model: scout("scout"), schema: Pick, prompt: ask("q5") });
  assert.deepEqual(Object.keys(result.object).sort(), ["model", "seats"]);
  assert.equal(typeof result.object.seats, "number");
  assert.equal(result.response.headers["x-scout-served-by"], "onprem");
});

test("generateText with Output.object (the AI SDK 7 way)", async () => {
  const result = await generateText({ model: scout("scout"), prompt: ask("q6"),
                                      output: Output.object({ schema: Pick }) });
  assert.equal(typeof result.output.model, "string");
  assert.equal(result.response.headers["x-scout-served-by"], "onprem");
});

test("a follow-up through previous_response_id", async () => {
  const first = await generateText({ model: scout("scout"), prompt: "Do you have the RAV4?" });
  const responseId = first.providerMetadata.openai.responseId;
  assert.match(responseId, /^resp_/);
  const second = await generateText({
    model: scout("scout"), prompt: "And in blue?",
    providerOptions: { openai: { previousResponseId: responseId } },
  });
  assert.match(second.text, ANSWER);
});

test("a multi-turn conversation replays earlier answers by item reference", async () => {
  const first = await generateText({ model: scout("scout"), prompt: "Do you have the RAV4?" });
  const second = await generateText({
    model: scout("scout"),
    messages: [{ role: "user", content: "Do you have the RAV4?" }, ...first.response.messages,
               { role: "user", content: "And in blue?" }],
  });
  assert.match(second.text, ANSWER);
});
