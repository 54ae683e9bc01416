// amqps:// (docs/protocol.md section 10) through a TLS-terminating proxy in front of
// the real broker, with certificates made by openssl for this test: the CA file is
// needed and checked, and a client certificate is sent when the proxy asks for one.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { after, before, test } from "node:test";

import { connect, TucanoConnectionError } from "../index.js";
import { DEMO, Worker } from "./worker.mjs";

let worker;
let dir;
const pem = (name) => join(dir, name);

/** A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and an unrelated CA. */
function makePki() {
  const openssl = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const key = (name) => openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name);
  for (const ca of ["ca", "other-ca"]) {
    key(`${ca}-key.pem`);
    openssl("req", "-x509", "-new", "-key", `${ca}-key.pem`, "-out", `${ca}.pem`, "-days", "2", "-subj", `/CN=${ca}`);
  }
  writeFileSync(pem("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  writeFileSync(pem("client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const [who, cn] of [["server", "localhost"], ["client", "tucano-client"]]) {
    key(`${who}-key.pem`);
    openssl("req", "-new", "-key", `${who}-key.pem`, "-out", `${who}.csr`, "-subj", `/CN=${cn}`);
    openssl("x509", "-req", "-in", `${who}.csr`, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
      "-out", `${who}.pem`, "-days", "2", "-extfile", `${who}.ext`);
  }
}

/** A TLS proxy to the broker on a free port; `requestCert`: ask for a client certificate from the CA. */
async function proxy(requestCert) {
  const server = tls.createServer(
    {
      key: readFileSync(pem("server-key.pem")),
      cert: readFileSync(pem("server.pem")),
      ca: readFileSync(pem("ca.pem")),
      requestCert,
      rejectUnauthorized: requestCert,
    },
    (client) => {
      const upstream = net.connect(5672, "127.0.0.1");
      client.pipe(upstream).pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    },
  );
  server.on("tlsClientError", () => {});
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `amqps://guest:guest@127.0.0.1:${server.address().port}/%2f`, server };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "tnode-pki-"));
  makePki();
  worker = await Worker.start("tls");
});
after(async () => {
  await worker?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const request = { token: DEMO.token, subscription_identifier: { number: "S0000000329" } };

test("amqps:// with the CA file gets the worker's reply; without it, or with another CA, it is refused", async () => {
  const { url, server } = await proxy(false);
  try {
    const client = await connect(url, { queuePrefix: worker.prefix, caFile: pem("ca.pem") });
    try {
      assert.equal((await client.authenticate(request)).subscriptionId, DEMO.subscriptions.S0000000329);
    } finally {
      await client.close();
    }
    for (const options of [{}, { caFile: pem("other-ca.pem") }]) {
      await assert.rejects(connect(url, { queuePrefix: worker.prefix, ...options }), (err) => {
        assert.ok(err instanceof TucanoConnectionError, String(err));
        assert.match(err.message, /certificate/);
        assert.doesNotMatch(err.message, /guest:guest/);
        return true;
      });
    }
  } finally {
    server.close();
  }
});

test("a client certificate is sent when the broker asks for one", async () => {
  const { url, server } = await proxy(true);
  try {
    const client = await connect(url, {
      queuePrefix: worker.prefix,
      caFile: pem("ca.pem"),
      clientCert: pem("client.pem"),
      clientKey: pem("client-key.pem"),
    });
    try {
      assert.equal((await client.authenticate(request)).ok, true);
    } finally {
      await client.close();
    }
    await assert.rejects(connect(url, { queuePrefix: worker.prefix, caFile: pem("ca.pem") }), (err) => {
      assert.ok(err instanceof TucanoConnectionError, String(err));
      assert.match(err.message, /certificate required/);
      return true;
    });
  } finally {
    server.close();
  }
});
