# Builds the switchyard binary and a small runtime image with it. The web client is embedded in
# the binary, so the image needs nothing else.
#
#     docker build -t switchyard .
#     docker run --network host switchyard serve --http 0.0.0.0:8080 ...
#
# Cargo.lock pins every dependency; the toolchain must be 1.89 or later for them.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package switchyard \
    && cp target/release/switchyard /usr/local/bin/switchyard

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin switchyard
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
USER switchyard
# HTTP and signaling, media, and the bundled STUN/TURN relay.
EXPOSE 8080/tcp 40000/udp 3478/udp 3478/tcp
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--http", "0.0.0.0:8080", "--media", "0.0.0.0:40000"]
