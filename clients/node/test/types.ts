// Uses the declared API as a TypeScript caller would; `tsc --strict` (npm run check)
// fails when index.d.ts and the intended use drift apart. Never run.

import {
  connect,
  Reply,
  TucanoBadReply,
  TucanoClient,
  TucanoConnectionError,
  TucanoError,
  TucanoTimeout,
  type AuthenticateRequest,
  type StatusCode,
} from "@tucano/auth-client";

export async function use(): Promise<string | null> {
  const client: TucanoClient = await connect("amqp://a,amqp://b", {
    queuePrefix: "tucano",
    caFile: "/ca.pem",
    clientCert: "/c.pem",
    clientKey: "/k.pem",
  });
  const request: AuthenticateRequest = {
    token: "35108255345D4F98ABFD7810A08E432F",
    access_token_identifier: { identifier: "demo-user-1", pass_code: "1234" },
    subscription_type_identifier: { name: "Tucano Premium" },
  };
  try {
    const reply: Reply = await client.authenticate(request, { timeout: 5000, batch: true });
    const code: StatusCode = reply.code;
    const ok: boolean = reply.ok;
    const n: number = client.inFlight;
    void [code, ok, n, reply.description, reply.message];
    await client.authenticate('{"token":"T","subscription_identifier":{"number":"S1"}}');
    return reply.ok ? reply.jwt : reply.message;
  } catch (err) {
    if (err instanceof TucanoTimeout || err instanceof TucanoConnectionError || err instanceof TucanoBadReply) {
      const base: TucanoError = err;
      return base.message;
    }
    throw err;
  } finally {
    await client.close();
  }
}

// @ts-expect-error: a request has a token.
export const noToken: AuthenticateRequest = { subscription_identifier: { number: "S1" } };
// @ts-expect-error: the timeout is a number of milliseconds.
export const badTimeout = (c: TucanoClient) => c.authenticate({ token: "T" }, { timeout: "10s" });
// @ts-expect-error: a reply's fields are read-only.
export const frozen = (r: Reply) => { r.code = "OK"; };
