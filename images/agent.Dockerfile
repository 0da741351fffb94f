# syntax=docker/dockerfile:1
# lvmpin-agent: the node agent (capacity reports, LV/PV provisioning, CSI Node).
# Build from the repository root:
#   docker build -f images/agent.Dockerfile -t lvmpin-agent:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lvmpin-provisioner --bin lvmpin-agent \
 && install -D target/release/lvmpin-agent /out/lvmpin-agent

FROM debian:bookworm-slim
# lvm2: the LVM commands; e2fsprogs/xfsprogs: mkfs and online grow;
# util-linux: blkid (never format a device that has a filesystem), mount;
# thin-provisioning-tools: thin_check, which activating a thin pool runs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      lvm2 e2fsprogs xfsprogs util-linux mount thin-provisioning-tools \
 && rm -rf /var/lib/apt/lists/*
# The container has no udev daemon (see the file for why that matters).
COPY images/lvm.conf /etc/lvm/lvm.conf
COPY --from=build /out/lvmpin-agent /usr/local/bin/lvmpin-agent
# Root, and privileged in the DaemonSet: LVM and mount need both.
ENTRYPOINT ["/usr/local/bin/lvmpin-agent"]
