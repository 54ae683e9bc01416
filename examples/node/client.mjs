// Calling tucano-auth from Node.js with @tucano/auth-client (clients/node).
//
//   cd examples/node && npm ci
//   node client.mjs '{"token": "35108255345D4F98ABFD7810A08E432F",
//     "subscription_identifier": {"number": "S0000000329"}}'
//
// Environment: AMQP_URL (one URL, or a comma-separated list of cluster nodes) and
// QUEUE_PREFIX, as the worker reads them. Prints the code, the subscription id and the
// message (not the JWT) as JSON. Exit status: 0 on OK, 1 on any other status code,
// 2 when no reply came.
import { connect, TucanoError } from "@tucano/auth-client";

try {
  const request = process.argv[2]
    ? JSON.parse(process.argv[2])
    : { token: "35108255345D4F98ABFD7810A08E432F", subscription_identifier: { number: "S0000000329" } };
  const client = await connect(process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f", {
    queuePrefix: process.env.QUEUE_PREFIX ?? "tucano",
  });
  try {
    const reply = await client.authenticate(request, { timeout: 10_000 });
    // reply.jwt is what Tucano needs: hand it on, never log it.
    console.log(JSON.stringify({ code: reply.code, subscription_id: reply.subscriptionId, message: reply.message }));
    process.exitCode = reply.ok ? 0 : 1;
  } finally {
    await client.close();
  }
} catch (err) {
  // TucanoTimeout, TucanoConnectionError or TucanoBadReply; or an argument that is not JSON.
  console.error(`error: ${err instanceof TucanoError ? err.name : "bad argument"}: ${err.message}`);
  process.exitCode = 2;
}
