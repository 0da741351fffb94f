#!/usr/bin/env bash
# End-to-end test of lvmpin on a kind cluster. Needs docker, kind and kubectl on
# a Linux (or Docker Desktop) machine; it is not part of CI (no Docker engine
# there). Run from anywhere:
#
#   hack/e2e-kind.sh            # create, test, delete
#   KEEP_CLUSTER=1 hack/e2e-kind.sh   # leave the cluster running afterwards
#
# Steps: build both images, create the cluster from hack/kind-config.yaml
# (kube-scheduler configured with manifests/scheduler/decisive.yaml), load the
# images, give each worker a 2 GiB loop-device VG named "lvmpin", install
# manifests/control-plane plus the StorageClasses, deploy the example
# StatefulSet and raw block pod, and wait until every claim is Bound and every
# pod Running.
#
# The loop devices and their VGs (all named "lvmpin") live in the host's
# kernel, so the host's own lvm may see them while the test runs; do not run it
# on a machine that has a VG of that name.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=${CLUSTER_NAME:-lvmpin-e2e}
tag=${IMAGE_TAG:-e2e}
agent_image=lvmpin-agent:$tag
extender_image=lvmpin-scheduler-extender:$tag
controller_image=lvmpin-controller:$tag
vg=lvmpin
disk_size=${DISK_SIZE:-2G}
timeout=${WAIT_TIMEOUT:-300s}
# Inside the repository: kustomize refuses absolute paths to other
# kustomizations, so the overlay below refers to ../../manifests.
work=$(mktemp -d "$repo/hack/.e2e-overlay.XXXXXX")

log() { printf '\n=== %s\n' "$*" >&2; }

# lvm --config for commands run from the host: see only this loop device, and
# manage device nodes without udev (as in images/lvm.conf).
lvm_config_for() {
  printf 'devices { global_filter = [ "a|^%s$|", "r|.*|" ] } activation { udev_sync = 0 udev_rules = 0 }' "$1"
}

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required" >&2; exit 2; }
done

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "failed; state of the cluster"
    kubectl get nodes,lvmnodes -o wide || true
    kubectl -n lvmpin-system get pods -o wide || true
    kubectl -n lvmpin-demo get pvc,pods -o wide || true
    kubectl -n lvmpin-demo get events --sort-by=.lastTimestamp | tail -n 30 || true
    kubectl -n lvmpin-system logs -l app.kubernetes.io/name=lvmpin-agent --tail=50 --prefix || true
    kubectl -n lvmpin-system logs -l app.kubernetes.io/name=lvmpin-scheduler-extender --tail=50 --prefix || true
  fi
  if [[ -z ${KEEP_CLUSTER:-} ]] && kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    log "deleting cluster $cluster"
    # Loop devices and device-mapper devices belong to the host kernel:
    # deactivate the LVs and detach the loop devices, or they outlive the
    # cluster.
    while read -r node dev; do
      docker run --rm --privileged -v /dev:/dev --entrypoint vgchange "$agent_image" \
        --config "$(lvm_config_for "$dev")" -an "$vg" || true
      docker exec "$node" losetup -d "$dev" || true
    done < <(cat "$work/devices" 2>/dev/null)
    kind delete cluster --name "$cluster" || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

log "building images"
docker build -f "$repo/images/agent.Dockerfile" -t "$agent_image" "$repo"
docker build -f "$repo/images/scheduler-extender.Dockerfile" -t "$extender_image" "$repo"
docker build -f "$repo/images/controller.Dockerfile" -t "$controller_image" "$repo"

log "creating kind cluster $cluster"
# kind resolves the relative hostPath in the config against the working
# directory.
# No --wait: nodes only become Ready once the CNI pods run, and those can only
# be scheduled after the extender runs (bootstrapped below).
(cd "$repo" && kind create cluster --name "$cluster" --config hack/kind-config.yaml)
kind load docker-image --name "$cluster" "$agent_image" "$extender_image" "$controller_image"

# kind nodes share the host's kernel, so every node sees every loop device.
# Each node therefore gets an lvm.conf that accepts only its own loop device,
# handed to the agent through LVM_SYSTEM_DIR (see the kustomization below);
# otherwise all nodes would see one another's VG "lvmpin".
prepare_node() {
  local node=$1 with_vg=$2 dev=
  local filter='"r|.*|"'
  if [[ $with_vg == yes ]]; then
    dev=$(docker exec "$node" sh -euc '
      mkdir -p /var/lib/lvmpin
      img=/var/lib/lvmpin/disk.img
      truncate -s '"$disk_size"' "$img"
      dev=$(losetup -f)
      # A privileged container gets the host devices that existed when it
      # started; make the node for a newer loop device.
      [ -b "$dev" ] || mknod "$dev" b 7 "${dev#/dev/loop}"
      losetup "$dev" "$img"
      echo "$dev"')
    filter="\"a|^${dev}\$|\", \"r|.*|\""
  fi
  docker exec -i "$node" sh -euc 'mkdir -p /etc/lvmpin/lvm/backup /etc/lvmpin/lvm/archive && cat > /etc/lvmpin/lvm/lvm.conf' <<CONF
# Written by hack/e2e-kind.sh for node $node.
devices {
  global_filter = [ $filter ]
  obtain_device_list_from_udev = 0
  use_devicesfile = 0
}
activation {
  udev_sync = 0
  udev_rules = 0
  monitoring = 0
}
backup {
  backup_dir = "/etc/lvmpin/lvm/backup"
  archive_dir = "/etc/lvmpin/lvm/archive"
}
CONF
  if [[ -n $dev ]]; then
    # The node image has no lvm2; the agent image has. Same kernel, same device.
    echo "$node $dev" >> "$work/devices"
    docker run --rm --privileged -v /dev:/dev --entrypoint vgcreate "$agent_image" \
      --config "$(lvm_config_for "$dev")" "$vg" "$dev"
    log "node $node: VG $vg on $dev"
  fi
}

log "preparing volume groups"
for node in $(kind get nodes --name "$cluster"); do
  if [[ $node == *control-plane* ]]; then
    prepare_node "$node" no
  else
    prepare_node "$node" yes
  fi
done

log "installing lvmpin"
# A throwaway overlay: our images, and the per-node lvm.conf for the agent.
cat > "$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../manifests/control-plane
  - ../../manifests/storageclasses
images:
  - name: ghcr.io/lvmpin/lvmpin-agent
    newName: lvmpin-agent
    newTag: "$tag"
  - name: ghcr.io/lvmpin/lvmpin-scheduler-extender
    newName: lvmpin-scheduler-extender
    newTag: "$tag"
  - name: ghcr.io/lvmpin/lvmpin-controller
    newName: lvmpin-controller
    newTag: "$tag"
patches:
  - target:
      kind: DaemonSet
      name: lvmpin-agent
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: LVM_SYSTEM_DIR, value: /etc/lvmpin/lvm}
      - op: add
        path: /spec/template/spec/containers/0/volumeMounts/-
        value: {name: e2e-lvm-conf, mountPath: /etc/lvmpin/lvm}
      - op: add
        path: /spec/template/spec/volumes/-
        value: {name: e2e-lvm-conf, hostPath: {path: /etc/lvmpin/lvm, type: Directory}}
YAML
kubectl apply -k "$work"

# The extender must run before anything else can be scheduled (kube-scheduler
# asks it about every pod, its own included). Bind its pending pods by hand,
# the same break-glass step docs/operations.md describes.
log "bootstrapping the extender"
deadline=$((SECONDS + 180))
until kubectl -n lvmpin-system wait --for=condition=Ready pod \
    -l app.kubernetes.io/name=lvmpin-scheduler-extender --timeout=5s >/dev/null 2>&1; do
  for pod in $(kubectl -n lvmpin-system get pods -l app.kubernetes.io/name=lvmpin-scheduler-extender \
      --field-selector=spec.nodeName= -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'); do
    node=$(kubectl -n lvmpin-system get pod "$pod" \
      -o jsonpath='{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}')
    kubectl -n lvmpin-system create -f - <<YAML || true
apiVersion: v1
kind: Binding
metadata: {name: $pod}
target: {apiVersion: v1, kind: Node, name: $node}
YAML
  done
  (( SECONDS < deadline )) || { echo "extender did not become ready" >&2; exit 1; }
done
kubectl -n lvmpin-system rollout status daemonset/lvmpin-agent --timeout="$timeout"
kubectl wait --for=create lvmnode --all --timeout=60s >/dev/null 2>&1 || true
kubectl get lvmnodes

log "deploying the examples"
kubectl apply -k "$repo/manifests/examples"
kubectl -n lvmpin-demo rollout status statefulset/web --timeout="$timeout"
kubectl -n lvmpin-demo wait --for=jsonpath='{.status.phase}'=Bound pvc --all --timeout="$timeout"
kubectl -n lvmpin-demo wait --for=condition=Ready pod --all --timeout="$timeout"
kubectl -n lvmpin-demo get pvc,pods -o wide

log "checking that each replica's claims sit on its node"
for i in 0 1 2; do
  node=$(kubectl -n lvmpin-demo get pod "web-$i" -o jsonpath='{.spec.nodeName}')
  for claim in "data-web-$i" "logs-web-$i"; do
    pv=$(kubectl -n lvmpin-demo get pvc "$claim" -o jsonpath='{.spec.volumeName}')
    pinned=$(kubectl get pv "$pv" -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}')
    [[ $pinned == "$node" ]] || { echo "PV $pv is pinned to $pinned, pod web-$i runs on $node" >&2; exit 1; }
  done
done

log "deleting the examples; the LVs must go"
kubectl delete -k "$repo/manifests/examples" --wait=true --timeout="$timeout"
deadline=$((SECONDS + 120))
while kubectl get pv -o name | grep -q .; do
  (( SECONDS < deadline )) || { kubectl get pv; echo "PVs were not deleted" >&2; exit 1; }
  sleep 2
done

log "e2e passed"
