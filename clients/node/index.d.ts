// Type declarations of @tucano/auth-client, hand-written. Under `tsc --strict` (npm run
// check), test/conformance.ts holds them to the JavaScript's own JSDoc types, and
// test/types.ts to the intended use.

/** Options of `connect`. */
export interface ConnectOptions {
  /** The worker's QUEUE_PREFIX; default "tucano". */
  queuePrefix?: string;
  /** PEM file of the CA that signed the broker's certificate, for amqps:// nodes (default: the system's roots). */
  caFile?: string;
  /** PEM file of a client certificate, for amqps:// nodes; needs `clientKey`. */
  clientCert?: string;
  /** PEM file of the client certificate's private key; needs `clientCert`. */
  clientKey?: string;
  /** The connection's name as the broker shows it (client property `connection_name`). */
  connectionName?: string;
}

/** Options of one call. */
export interface AuthenticateOptions {
  /** How long to wait for the reply, in milliseconds; default 10000. */
  timeout?: number;
  /** Send to the batch queue (`PREFIX.authenticate.batch`) instead of the interactive one. */
  batch?: boolean;
}

/** An identifier by authentication code, or by identifier and pass code. */
export type CredentialIdentifier =
  | { authentication_code: string }
  | { identifier: string; pass_code: string };

/** A request body (docs/protocol.md section 3): a token and exactly one identifier. */
export interface AuthenticateRequest {
  token: string;
  subscription_identifier?: { id: string } | { number: string } | null;
  installed_item_identifier?: { id: string } | { serial_number: string } | { alternative_code: string } | null;
  access_token_identifier?: CredentialIdentifier | null;
  customer_identification_medium_identifier?: CredentialIdentifier | null;
  subscription_type_identifier?: { id: string } | { name: string } | { alternative_code: string } | null;
}

/** A status code of the worker's reply. */
export type StatusCode =
  | "OK"
  | "REPLY_TO_NOT_ALLOWED"
  | "INVALID_REQUEST"
  | "MISSING_IDENTIFIER"
  | "MULTIPLE_IDENTIFIERS"
  | "SUBSCRIPTION_TYPE_NOT_APPLICABLE"
  | "INVALID_TOKEN"
  | "TOKEN_EXPIRED"
  | "AUTHENTICATION_FAILED"
  | "NOT_FOUND"
  | "NOT_EFFECTIVE"
  | "NOT_PROVISIONED_BY_TUCANO"
  | "SUBSCRIPTION_INACTIVE"
  | "AMBIGUOUS_SUBSCRIPTION"
  | "TEMPORARILY_UNAVAILABLE"
  | "INTERNAL_ERROR";

/** A reply of the worker, checked against the published reply schema. Frozen. */
export class Reply {
  private constructor();
  /** The status code. */
  readonly code: StatusCode;
  /** Whether `code` is "OK". */
  readonly ok: boolean;
  /** The subscription's id (32 upper-case hex digits) on OK, else null. */
  readonly subscriptionId: string | null;
  /** The signed JWT for Tucano on OK, else null. A credential: never log it. */
  readonly jwt: string | null;
  /** Empty on OK, else the code's fixed one-sentence description. */
  readonly description: string;
  /** Empty on OK, else what exactly was wrong. */
  readonly message: string;
}

/** Base class of every error a call or `connect` rejects with. */
export class TucanoError extends Error {
  constructor(message: string);
}
/** No reply within the call's timeout. */
export class TucanoTimeout extends TucanoError {}
/** The broker unreachable or refusing, no queue under the prefix, or the connection lost. */
export class TucanoConnectionError extends TucanoError {}
/** A message for this call that is not a worker reply. */
export class TucanoBadReply extends TucanoError {}

/** One connection to the broker; any number of concurrent calls. Made by `connect`. */
export class TucanoClient {
  private constructor();
  /**
   * Sends one request and waits for its reply. The request is an object (written as
   * JSON), or JSON text or bytes sent as they are. A status other than OK resolves
   * (see `Reply.code`); no reply at all rejects with a TucanoError.
   */
  authenticate(request: AuthenticateRequest | string | Uint8Array, options?: AuthenticateOptions): Promise<Reply>;
  /** How many calls are waiting for their reply now. */
  readonly inFlight: number;
  /** Closes the connection; calls still waiting reject with TucanoConnectionError. */
  close(): Promise<void>;
}

/**
 * Connects to the broker: `url` is one AMQP URL or a comma-separated list of the nodes
 * of one cluster, tried in turn from a random start.
 */
export function connect(url: string, options?: ConnectOptions): Promise<TucanoClient>;
