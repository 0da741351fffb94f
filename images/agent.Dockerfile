# syntax=docker/dockerfile:1
# lvmpin-agent: the node agent (capacity reports, LV/PV provisioning, CSI Node).
# Build from the repository root:
#   docker build -f images/agent.Dockerfile -t lvmpin-agent:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Symbols stripped too (the release profile strips debuginfo only); the
# image's binary then carries no symbol table. --locked: Cargo.lock's exact
# crate versions. See docs/install.md, "Images", for reproducible builds.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lvmpin-provisioner --bin lvmpin-agent \
 && install -D target/release/lvmpin-agent /out/lvmpin-agent

FROM debian:bookworm-slim
# Only what the agent executes (tests/tests/manifests/images.rs checks this
# against the source): lvm2 (lvm); e2fsprogs (mkfs.ext4, resize2fs);
# xfsprogs (mkfs.xfs, xfs_growfs); util-linux (blkid: never format a device
# that has a filesystem); thin-provisioning-tools (thin_check, which lvm runs
# when activating a thin pool). Mounting uses mount(2) directly: no mount(8).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      lvm2 e2fsprogs xfsprogs util-linux thin-provisioning-tools \
 && rm -rf /var/lib/apt/lists/*
# The container has no udev daemon (see the file for why that matters).
COPY images/lvm.conf /etc/lvm/lvm.conf
COPY --from=build /out/lvmpin-agent /usr/local/bin/lvmpin-agent
# Root, and privileged in the DaemonSet: LVM and mount need both.
ENTRYPOINT ["/usr/local/bin/lvmpin-agent"]
