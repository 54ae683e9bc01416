# Build stage: compile the release binary with the toolchain the project is tested on.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# A stripped binary: no symbols or line tables in the image (a panic's backtrace shows
# addresses). Set before both builds, so the cached dependencies match the last one.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_DEBUG=0

# Dependency layer: the manifests of the whole workspace (cargo reads every member's
# even when it builds only the product) with empty sources, built once. It is rebuilt
# only when a Cargo.toml or Cargo.lock changes, not when the code does.
COPY Cargo.toml Cargo.lock ./
COPY tools/tucano-bench/Cargo.toml tools/tucano-bench/
COPY tools/tucano-chaos/Cargo.toml tools/tucano-chaos/
COPY tools/tucano-hostile/Cargo.toml tools/tucano-hostile/
COPY tools/tucano-testkit/Cargo.toml tools/tucano-testkit/
RUN mkdir -p src tools/tucano-bench/src tools/tucano-chaos/src tools/tucano-hostile/src \
        tools/tucano-testkit/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs tools/tucano-hostile/src/lib.rs tools/tucano-testkit/src/lib.rs \
    && echo 'fn main() {}' > tools/tucano-bench/src/main.rs \
    && echo 'fn main() {}' > tools/tucano-chaos/src/main.rs \
    && cargo build --release --locked -p tucano-auth --bin tucano-auth \
    && rm -rf src

# The product's sources. `touch` makes them newer than the placeholder build, whatever
# times the build context carried, so cargo compiles them and not the empty main.
COPY build.rs README.md ./
COPY src ./src
COPY schemas ./schemas
COPY migrations ./migrations
RUN touch build.rs src/main.rs src/lib.rs \
    && cargo build --release --locked -p tucano-auth --bin tucano-auth \
    && ./target/release/tucano-auth --version

# Run stage: the binary alone, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tucano
COPY --from=build /src/target/release/tucano-auth /usr/local/bin/tucano-auth
USER tucano
# Metrics and health: inside a container the server must listen beyond loopback for
# the port to be published; the health check below still asks on loopback.
ENV METRICS_ADDR=0.0.0.0:9477
EXPOSE 9477
# Ready means: both request queues consumed and the database reachable. `probe` is the
# binary's own HTTP GET (the image has no curl): exit 0 on 2xx, 1 otherwise.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["tucano-auth", "probe", "http://127.0.0.1:9477/readyz"]
ENTRYPOINT ["tucano-auth"]
CMD ["serve"]
