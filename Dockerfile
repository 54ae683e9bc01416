# Build stage: compile the release binary with the toolchain the project is tested on.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schemas ./schemas
COPY migrations ./migrations
COPY README.md ./
# The workspace's other members (benchmark, chaos tool): cargo reads their manifests
# even when it builds only the product.
COPY tools ./tools
RUN cargo build --release --locked -p tucano-auth --bin tucano-auth

# Run stage: the binary alone, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 tucano
COPY --from=build /src/target/release/tucano-auth /usr/local/bin/tucano-auth
USER tucano
ENTRYPOINT ["tucano-auth"]
CMD ["serve"]
