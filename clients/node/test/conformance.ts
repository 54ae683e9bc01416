// Holds the hand-written declarations (index.d.ts) to the implementation: each export
// of the JavaScript, typed by its JSDoc under checkJs, must be assignable to what
// index.d.ts declares, so `tsc --strict` (npm run check) fails when they drift apart.

import type * as Declared from "@tucano/auth-client";
import * as client from "../src/client.js";
import * as errors from "../src/errors.js";
import * as reply from "../src/reply.js";

export const connect: typeof Declared.connect = client.connect;
export const TucanoError: typeof Declared.TucanoError = errors.TucanoError;
export const TucanoTimeout: typeof Declared.TucanoTimeout = errors.TucanoTimeout;
export const TucanoConnectionError: typeof Declared.TucanoConnectionError = errors.TucanoConnectionError;
export const TucanoBadReply: typeof Declared.TucanoBadReply = errors.TucanoBadReply;
export const aClient = (c: client.TucanoClient): Declared.TucanoClient => c;
export const aReply = (r: reply.Reply): Declared.Reply => r;
