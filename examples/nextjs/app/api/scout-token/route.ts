// The token route: the browser never sees the API key. This server holds it (SCOUT_API_KEY,
// from its environment) and trades it for a one-minute WebSocket token per browser.
import { mintToken } from "scout-gateway-client/server";

export const dynamic = "force-dynamic";

export async function POST() {
  const gateway = process.env.SCOUT_URL;       // how this server reaches the gateway
  const apiKey = process.env.SCOUT_API_KEY;
  if (!gateway || !apiKey) {
    return Response.json({ error: "set SCOUT_URL and SCOUT_API_KEY" }, { status: 500 });
  }
  const { token, expires_in } = await mintToken({ gateway, apiKey });
  // How browsers reach it: the same place unless SCOUT_PUBLIC_URL says otherwise.
  const publicUrl = process.env.SCOUT_PUBLIC_URL ?? gateway;
  return Response.json({ token, expires_in, url: `${publicUrl.replace(/^http/, "ws")}/ws/chat` });
}
