// Server side of the token exchange: your server holds the gateway API key and trades it
// for a short-lived WebSocket token for one browser (POST /api/ws-token). Use it in a
// Next.js route handler, an Express route, anything that runs on a server:
//
//   import { mintToken } from "scout-gateway-client/server";
//   export async function POST() {
//     const { token, expires_in } = await mintToken({
//       gateway: process.env.SCOUT_URL!, apiKey: process.env.SCOUT_API_KEY!,
//     });
//     return Response.json({ token, expires_in });
//   }

export interface MintOptions {
  /** The gateway's base URL, e.g. https://scout.example.com */
  gateway: string;
  /** The frontend's API key: from the server's environment, never the browser's. */
  apiKey: string;
  /** The customer the token is for (a per-user limit key); the key must be trusted to name
   * end users (auth.end_user_keys). */
  user?: string;
  fetch?: typeof fetch;
}

export interface MintedToken {
  token: string;
  expires_in: number;
  [extra: string]: unknown;
}

export class TokenError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = "TokenError";
  }
}

export async function mintToken({ gateway, apiKey, user, fetch: doFetch = fetch }:
                                MintOptions): Promise<MintedToken> {
  const resp = await doFetch(`${gateway.replace(/\/+$/, "")}/api/ws-token`, {
    method: "POST",
    headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
    body: JSON.stringify(user ? { user } : {}),
  });
  const body = await resp.json().catch(() => ({})) as
    { token?: string; expires_in?: number; error?: { code?: string; message?: string } };
  if (!resp.ok || !body.token) {
    throw new TokenError(resp.status, body.error?.code ?? "token_failed",
                         body.error?.message ?? `the gateway answered ${resp.status}`);
  }
  return body as MintedToken;
}
