# syntax=docker/dockerfile:1
# lvmpin-controller: recovery of claims and volumes from nodes that are gone.
# Build from the repository root:
#   docker build -f images/controller.Dockerfile -t lvmpin-controller:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Symbols stripped too (the release profile strips debuginfo only); the
# image's binary then carries no symbol table. --locked: Cargo.lock's exact
# crate versions. See docs/install.md, "Images", for reproducible builds.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lvmpin-cluster-controller --bin lvmpin-controller \
 && install -D target/release/lvmpin-controller /out/lvmpin-controller

# glibc and libgcc only, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lvmpin-controller /usr/local/bin/lvmpin-controller
USER 65532:65532
EXPOSE 9809
ENTRYPOINT ["/usr/local/bin/lvmpin-controller"]
