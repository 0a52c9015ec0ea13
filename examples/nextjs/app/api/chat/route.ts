// The alternative HTTP path: the Vercel AI SDK's streamText through the gateway. The default
// provider calls /v1/responses; the gateway routes it like any other turn.
import { createOpenAI } from "@ai-sdk/openai";
import { streamText } from "ai";

export const dynamic = "force-dynamic";

export async function POST(req: Request) {
  const { prompt } = (await req.json()) as { prompt: string };
  const scout = createOpenAI({ baseURL: `${process.env.SCOUT_URL}/v1`,
                               apiKey: process.env.SCOUT_API_KEY });
  const result = streamText({ model: scout("scout"), prompt });
  return result.toTextStreamResponse();
}
