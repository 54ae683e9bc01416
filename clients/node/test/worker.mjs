// The test harness: the real tucano-auth binary on a database and queue prefix of its
// own (the demo data loaded by `serve --demo`), a stand-in worker for replies the real
// one never sends, and the clean-up of everything a test declared.

import { spawn, execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import amqp from "amqplib";

export const AMQP_URL = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f";
const PG_HOST = "127.0.0.1";
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const BINARY = process.env.TUCANO_AUTH_BIN ?? `${REPO}target/debug/tucano-auth`;
const run = promisify(execFile);

/** The demo token and the demo Tucano subscriptions (README, "The demo data"). */
export const DEMO = {
  token: "35108255345D4F98ABFD7810A08E432F",
  subscriptions: {
    S0000000329: "75E3E50139F24DC3A6C9AA0C026D0292",
    S0000000330: "DE000000000040008000000000000030",
    S0000000331: "DE000000000040008000000000000031",
  },
};

/** A name for this test's database and queue prefix: lower case, a valid identifier. */
export function unique(label) {
  return `tnode_${label}_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** Polls `check` every 50 ms until it returns true; throws after `ms`. */
export async function waitFor(what, check, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Consumers of `queue`, or null while it does not exist. */
async function consumers(connection, queue) {
  const channel = await connection.createChannel();
  channel.on("error", () => {});
  try {
    return (await channel.checkQueue(queue)).consumerCount;
  } catch {
    return null;
  } finally {
    await channel.close().catch(() => {});
  }
}

/** The real worker: `serve --demo` on a fresh database under a fresh prefix. */
export class Worker {
  static async start(label) {
    const worker = new Worker(unique(label));
    try {
      await worker.#spawn();
    } catch (err) {
      // A worker that died while starting may have made its database already.
      await worker.cleanup().catch(() => {});
      throw err;
    }
    return worker;
  }

  constructor(prefix) {
    this.prefix = prefix;
    this.stderr = "";
  }

  async #spawn() {
    this.child = spawn(BINARY, ["serve", "--demo"], {
      env: {
        ...process.env,
        AMQP_URL,
        DATABASE_URL: `postgres://postgres@${PG_HOST}:5432/${this.prefix}`,
        QUEUE_PREFIX: this.prefix,
        // A free port each, so workers of tests in parallel never collide.
        METRICS_ADDR: "127.0.0.1:0",
        TUCANO_JWT_SECRET: "test-jwt-secret-0123456789abcdef0123456789",
        RUST_LOG: "warn",
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child.stderr.on("data", (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
      // No such binary: 'error' and no 'exit'.
      this.child.once("error", (error) => resolve({ error }));
    });
    let gone = null;
    this.exited.then((how) => (gone = how));
    const connection = await amqp.connect(AMQP_URL);
    try {
      await waitFor(`the worker ${this.prefix} consuming`, async () => {
        if (gone) {
          const why = gone.error ? gone.error.message : `status ${gone.code ?? gone.signal}: ${this.stderr}`;
          throw new Error(`the worker ${BINARY} did not start (set TUCANO_AUTH_BIN, or cargo build): ${why}`);
        }
        return ((await consumers(connection, `${this.prefix}.authenticate`)) ?? 0) > 0;
      });
    } finally {
      await connection.close();
    }
  }

  /** SIGTERM, and waits up to 40 s for the worker to drain and exit. */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null || this.child.pid === undefined) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 40_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stops the worker, deletes its queues and exchanges, and drops its database. */
  async cleanup() {
    await this.stop();
    await deletePrefix(this.prefix);
    await run("psql", ["-h", PG_HOST, "-U", "postgres", "-d", "postgres", "-qc",
      `DROP DATABASE IF EXISTS "${this.prefix}" WITH (FORCE)`]);
  }
}

/** Deletes the queues and exchanges the worker declares under `prefix`, and `extra` queues. */
export async function deletePrefix(prefix, extra = []) {
  const connection = await amqp.connect(AMQP_URL);
  try {
    const queues = ["authenticate", "authenticate.batch", "dead-letter"].map((q) => `${prefix}.${q}`);
    for (const queue of [...queues, ...extra]) {
      const channel = await connection.createChannel();
      await channel.deleteQueue(queue);
      await channel.close();
    }
    for (const exchange of ["results", "dead-letter"].map((e) => `${prefix}.${e}`)) {
      const channel = await connection.createChannel();
      await channel.deleteExchange(exchange);
      await channel.close();
    }
  } finally {
    await connection.close();
  }
}

/**
 * A stand-in worker on `PREFIX.authenticate` (an exclusive queue of its own): it
 * records each request's properties and answers with `answer(message)`'s body, or
 * not at all when that returns null. For what the real worker never sends.
 */
export class StandIn {
  static async start(answer) {
    const standIn = new StandIn(unique("standin"));
    standIn.connection = await amqp.connect(AMQP_URL);
    const channel = await standIn.connection.createChannel();
    await channel.assertQueue(`${standIn.prefix}.authenticate`, { exclusive: true });
    await channel.consume(`${standIn.prefix}.authenticate`, (message) => {
      standIn.requests.push(message);
      const body = answer(message);
      if (body !== null) {
        channel.publish("", message.properties.replyTo, Buffer.from(body), {
          correlationId: message.properties.correlationId,
          contentType: "application/json",
        });
      }
    }, { noAck: true });
    return standIn;
  }

  constructor(prefix) {
    this.prefix = prefix;
    this.requests = [];
  }

  /** Closing the connection deletes the exclusive queue. */
  async close() {
    await this.connection.close();
  }
}

/** The broker's ids (pids) of the connections whose client property connection_name is `name`. */
async function brokerConnections(name) {
  const { stdout } = await run("rabbitmqctl", ["-q", "list_connections", "pid", "client_properties"]);
  return stdout
    .split("\n")
    .filter((line) => line.includes(`{"connection_name","${name}"}`))
    .map((line) => line.split("\t")[0]);
}

/** How many connections named `name` the broker has. */
export async function connectionsNamed(name) {
  return (await brokerConnections(name)).length;
}

/** Closes, from the broker's side, the connection named `name` by its client. */
export async function closeFromBroker(name) {
  let pid = null;
  await waitFor(`connection ${name} listed`, async () => (pid = (await brokerConnections(name))[0] ?? null) !== null, 20_000);
  await run("rabbitmqctl", ["-q", "close_connection", pid, "closed by the test"]);
}

/**
 * Runs `node ...args` in a process of its own, without blocking this one (a stand-in
 * worker here must go on answering); kills it after 30 s.
 * @returns {Promise<{ status: number | null, stdout: string, stderr: string }>}
 */
export function runNode(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
