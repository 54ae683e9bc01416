// The errors a call rejects with. A status other than OK is not an error: it is a
// Reply whose `code` says why. These mean the call got no usable reply at all.

/** Base class of every error this package rejects with. */
export class TucanoError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * No reply within the call's timeout. The request may still be answered later (it
 * waits in its durable queue until a worker takes it); that late reply is dropped.
 */
export class TucanoTimeout extends TucanoError {}

/**
 * The broker could not be reached, refused the request, has no queue under this
 * prefix, or the connection was lost while the call waited. Every call waiting when
 * the connection is lost gets it at once; the client is then closed: connect again.
 */
export class TucanoConnectionError extends TucanoError {}

/** A message arrived for this call that is not a reply of the worker (schema check). */
export class TucanoBadReply extends TucanoError {}
