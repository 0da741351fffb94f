# syntax=docker/dockerfile:1
# lvmpin-scheduler-extender: the kube-scheduler HTTP extender.
# Build from the repository root:
#   docker build -f images/scheduler-extender.Dockerfile -t lvmpin-scheduler-extender:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Symbols stripped too (the release profile strips debuginfo only); the
# image's binary then carries no symbol table. --locked: Cargo.lock's exact
# crate versions. See docs/install.md, "Images", for reproducible builds.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lvmpin-scheduler-extender --bin lvmpin-scheduler-extender \
 && install -D target/release/lvmpin-scheduler-extender /out/lvmpin-scheduler-extender

# glibc and libgcc only, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lvmpin-scheduler-extender /usr/local/bin/lvmpin-scheduler-extender
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lvmpin-scheduler-extender"]
