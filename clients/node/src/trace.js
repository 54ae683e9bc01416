// W3C trace context for the request headers (docs/protocol.md section 15), when the
// caller has @opentelemetry/api installed: an optional peer dependency, loaded with a
// dynamic import so that the package works without it.

/**
 * @typedef {typeof import("@opentelemetry/api")} OtelApi
 */

/** @type {Promise<OtelApi | null> | undefined} */
let loading;

/**
 * The OpenTelemetry API, or null when it is not installed; loaded once.
 * @returns {Promise<OtelApi | null>}
 */
export function loadOtel() {
  loading ??= import("@opentelemetry/api").then(
    // The API is CommonJS in some versions: its exports may sit under `default`.
    (module) => /** @type {OtelApi} */ (module.trace ? module : /** @type {any} */ (module).default),
    () => null,
  );
  return loading;
}

/**
 * The `traceparent` / `tracestate` headers of the caller's active context, or none.
 * Through the registered propagator first (as every OpenTelemetry instrumentation
 * does); when that wrote no `traceparent` (none registered, or not W3C), from the
 * active span itself, because the worker reads W3C Trace Context only. Never throws:
 * tracing must not cost a call its answer.
 * @param {OtelApi | null} api
 * @returns {Record<string, string>}
 */
export function traceHeaders(api) {
  if (api === null) return {};
  /** @type {Record<string, string>} */
  const carrier = {};
  try {
    const active = api.context.active();
    api.propagation.inject(active, carrier);
    if (typeof carrier.traceparent !== "string") {
      const span = api.trace.getSpanContext(active);
      if (span && api.trace.isSpanContextValid(span)) {
        const sampled = (span.traceFlags & api.TraceFlags.SAMPLED) !== 0 ? "01" : "00";
        carrier.traceparent = `00-${span.traceId}-${span.spanId}-${sampled}`;
        const state = span.traceState?.serialize();
        if (state) carrier.tracestate = state;
      }
    }
  } catch {
    return {};
  }
  /** @type {Record<string, string>} */
  const headers = {};
  for (const [key, value] of Object.entries(carrier)) {
    if (typeof value === "string") headers[key] = value;
  }
  return headers;
}
