#!/usr/bin/env bash
# Brings the Kubernetes manifests up on a local cluster and waits until the pod is ready:
# kind (default) or an existing k3s. For people with Docker and a cluster tool; CI has
# neither, so this script is not run by the test suite (docs/kubernetes.md says what was
# and was not tested).
#
#   COMFYUI_IMAGE=my-registry/comfyui-cpu:0.3.64 scripts/kind-up.sh          # kind
#   COMFYUI_IMAGE=my-registry/comfyui-cpu:0.3.64 scripts/kind-up.sh --k3s    # k3s
#
# It applies overlays/no-gpu (no GPU request, no nvidia RuntimeClass): ComfyUI must run in
# CPU mode (`--cpu --listen 0.0.0.0`), the sidecar reports gpu_nvml_up 0. With
# OVERLAY=base on a cluster with NVIDIA GPUs and the GPU Operator, the full base is used.
#
# Needs: docker, kubectl, and kind (or k3s). The Prometheus Operator CRDs must exist in the
# cluster (ServiceMonitor, PrometheusRule, AlertmanagerConfig): install kube-prometheus or
# the kube-prometheus-stack chart first, or set PROMETHEUS_OPERATOR_CRDS to a file or URL
# of the operator's CRD bundle to apply it here.
#
# Variables: COMFYUI_IMAGE (required), CLUSTER_NAME (kind, default comfy-sentinel),
# SENTINEL_IMAGE (default comfy-sentinel:local, built from the Dockerfile unless
# SKIP_BUILD=1), OVERLAY (default no-gpu), TIMEOUT (rollout wait, default 600s).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=kind
[ "${1:-}" = "--k3s" ] && mode=k3s
: "${COMFYUI_IMAGE:?set COMFYUI_IMAGE to a ComfyUI image that listens on 0.0.0.0:8188}"
CLUSTER_NAME=${CLUSTER_NAME:-comfy-sentinel}
SENTINEL_IMAGE=${SENTINEL_IMAGE:-comfy-sentinel:local}
OVERLAY=${OVERLAY:-no-gpu}
TIMEOUT=${TIMEOUT:-600s}
NAMESPACE=comfyui

need() { command -v "$1" >/dev/null 2>&1 || { echo "kind-up: $1 is required" >&2; exit 1; }; }
need kubectl
need docker
need openssl

if [ "$mode" = kind ]; then
  need kind
  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    kind create cluster --name "$CLUSTER_NAME" --wait 120s
  fi
  kubectl config use-context "kind-$CLUSTER_NAME"
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  docker build -t "$SENTINEL_IMAGE" .
fi
load_image() {
  if [ "$mode" = kind ]; then
    kind load docker-image "$1" --name "$CLUSTER_NAME"
  else
    docker save "$1" | sudo k3s ctr images import -
  fi
}
load_image "$SENTINEL_IMAGE"
# A ComfyUI image that exists only locally is loaded too; a registry image is pulled.
if docker image inspect "$COMFYUI_IMAGE" >/dev/null 2>&1; then load_image "$COMFYUI_IMAGE"; fi

if ! kubectl get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1; then
  if [ -n "${PROMETHEUS_OPERATOR_CRDS:-}" ]; then
    kubectl apply --server-side -f "$PROMETHEUS_OPERATOR_CRDS"
    kubectl wait --for=condition=Established --timeout=60s \
      crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com \
      crd/alertmanagerconfigs.monitoring.coreos.com
  else
    echo "kind-up: the Prometheus Operator CRDs are missing; install the operator or set PROMETHEUS_OPERATOR_CRDS" >&2
    exit 1
  fi
fi

# The Secret is never in git: random values here (replace them for real receivers).
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NAMESPACE" create secret generic comfy-sentinel \
  --from-literal=ingest-token="$(openssl rand -hex 32)" \
  --from-literal=webhook-secret="whsec_$(openssl rand -base64 32)" \
  --from-literal=smtp-password="$(openssl rand -hex 16)" \
  --dry-run=client -o yaml | kubectl apply -f -

# A throw-away kustomization on top of the chosen overlay that names the two images.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$OVERLAY" = base ]; then src="$(pwd)/deploy/kubernetes/base"; else src="$(pwd)/deploy/kubernetes/overlays/$OVERLAY"; fi
cat >"$tmp/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $src
images:
  - name: comfy-sentinel
    newName: ${SENTINEL_IMAGE%:*}
    newTag: ${SENTINEL_IMAGE##*:}
  - name: comfyui
    newName: ${COMFYUI_IMAGE%:*}
    newTag: ${COMFYUI_IMAGE##*:}
EOF
kubectl apply -k "$tmp"

echo "waiting up to $TIMEOUT for the ComfyUI pod (ComfyUI, sidecar, reloader) to be ready"
kubectl -n "$NAMESPACE" rollout status deployment/comfyui --timeout="$TIMEOUT"
kubectl -n "$NAMESPACE" wait --for=condition=Ready pod -l app.kubernetes.io/name=comfyui --timeout=120s
kubectl -n "$NAMESPACE" get pods -o wide
cat <<EOF
Ready. The sidecar, from this machine:
  kubectl -n $NAMESPACE port-forward deploy/comfyui 9188:9188 &
  curl -s 127.0.0.1:9188/readyz; curl -s 127.0.0.1:9188/metrics | grep -E '^(comfyui_up|gpu_nvml_up) '
Config reload: kubectl -n $NAMESPACE edit configmap comfy-sentinel-config, then
  kubectl -n $NAMESPACE logs deploy/comfyui -c config-reloader
EOF
