// The worker's reply envelope, checked against the published reply schema (a copy of
// the repository's schemas/reply.schema.json ships in this package) and typed.

import { readFileSync } from "node:fs";
import { inspect } from "node:util";
import Ajv2020Module from "ajv/dist/2020.js";

import { TucanoBadReply } from "./errors.js";

/**
 * No worker reply comes near this size (a JWT and a few short strings): anything
 * larger is refused before it is parsed.
 */
const MAX_REPLY_BYTES = 64 * 1024;

/** @typedef {{ (data: unknown): boolean, errors?: Array<{ instancePath: string, message?: string }> | null }} Validator */

/** @type {Validator | undefined} */
let validator;

/** The reply schema's validator, compiled once on first use. */
function validate() {
  if (validator === undefined) {
    const schema = JSON.parse(readFileSync(new URL("../schemas/reply.schema.json", import.meta.url), "utf8"));
    // ajv is CommonJS: its class is the default export or the module itself.
    /** @type {any} */
    const Ajv2020 = /** @type {any} */ (Ajv2020Module).default ?? Ajv2020Module;
    validator = /** @type {Validator} */ (new Ajv2020({ strict: true }).compile(schema));
  }
  return validator;
}

/** A reply of the worker: `ok` when `code` is "OK", then `subscriptionId` and `jwt`. */
export class Reply {
  /**
   * @param {{ data: { subscription_id: string, jwt: string } | null,
   *           status: { code: string, description: string, message: string } }} envelope
   */
  constructor(envelope) {
    /** The status code, e.g. "OK" or "NOT_FOUND" (the schema check admits only the listed ones). */
    this.code = /** @type {import("../index.js").StatusCode} */ (envelope.status.code);
    /** Whether the code is "OK". */
    this.ok = this.code === "OK";
    /** The subscription's id (32 upper-case hex digits) on OK, else null. */
    this.subscriptionId = envelope.data === null ? null : envelope.data.subscription_id;
    /** The signed JWT for Tucano on OK, else null. A credential: never log it. */
    this.jwt = envelope.data === null ? null : envelope.data.jwt;
    /** Empty on OK, else the code's fixed one-sentence description. */
    this.description = envelope.status.description;
    /** Empty on OK, else what exactly was wrong. */
    this.message = envelope.status.message;
    Object.freeze(this);
  }

  /** console.log and util.inspect show the reply with its JWT left out. */
  [inspect.custom]() {
    const { code, ok, subscriptionId, description, message } = this;
    const jwt = this.jwt === null ? null : "<redacted>";
    return `Reply ${inspect({ code, ok, subscriptionId, jwt, description, message })}`;
  }
}

/**
 * Reads a reply body; throws TucanoBadReply saying what is wrong, never what the body
 * holds (it may carry a JWT).
 * @param {Buffer} body
 * @returns {Reply}
 */
export function parseReply(body) {
  if (body.length > MAX_REPLY_BYTES) {
    throw new TucanoBadReply(`the reply is ${body.length} bytes, over ${MAX_REPLY_BYTES}`);
  }
  let envelope;
  try {
    envelope = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (err) {
    throw new TucanoBadReply(`the reply is not UTF-8 JSON (${err instanceof Error ? err.name : "error"})`);
  }
  const check = validate();
  if (!check(envelope)) {
    const first = check.errors?.[0];
    const where = first ? `${first.instancePath || "(root)"} ${first.message ?? "is invalid"}` : "is invalid";
    throw new TucanoBadReply(`the reply does not match the reply schema: ${where}`);
  }
  return new Reply(envelope);
}
