#!/usr/bin/env bash
# Static validation of the Kubernetes manifests (deploy/kubernetes/), for CI without a
# cluster. For the base and every overlay:
#   1. render it with kustomize (`kubectl kustomize`, or a `kustomize` binary);
#   2. every built-in kind: `kubernetes-validate --strict` against each version in
#      KUBERNETES_VERSIONS (unknown fields are errors);
#   3. every Prometheus Operator and KEDA object: the CRD's own openAPIV3Schema with
#      unknown fields rejected as the API server does (the CRD files are not in this
#      repository: where they are looked for, and their versions and checksums, are in
#      tests/fixtures/kubernetes/README.md);
#   4. the rule groups inside every PrometheusRule: `promtool check rules`, and the
#      autoscaling queries (KEDA trigger, prometheus-adapter rule) parsed by promtool;
#   5. the sidecar config in every ConfigMap: `comfy-sentinel check`;
#   6. the sidecar's and the reloader's hardening, asserted field by field;
# then 7. a checkov scan of all rendered manifests with the committed .checkov.yaml.
# Under CI=true a missing tool is an error; elsewhere its step is skipped with a notice.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSIONS=${KUBERNETES_VERSIONS:-"1.30.0 1.35.0"}
K8S_DIR=deploy/kubernetes
ci=${CI:-}

missing() {
  if [ "$ci" = "true" ]; then
    echo "validate-kubernetes: $1 is missing (required under CI): $2" >&2
    exit 1
  fi
  echo "validate-kubernetes: SKIP $2 ($1 not installed)"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Render.
if command -v kustomize >/dev/null 2>&1; then
  render() { kustomize build "$1"; }
elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  render() { kubectl kustomize "$1"; }
else
  echo "validate-kubernetes: neither kustomize nor kubectl (with kustomize) is installed" >&2
  exit 1
fi
targets=("$K8S_DIR/base")
for o in "$K8S_DIR"/overlays/*/; do targets+=("${o%/}"); done
mkdir -p "$work/rendered"
for t in "${targets[@]}"; do
  name=$(basename "$t")
  echo "== render $t"
  # kustomize writes the AlertmanagerConfig's `matchType: =` unquoted: valid YAML 1.2
  # (what the API server reads) but YAML 1.1's "value" tag for PyYAML-based tools.
  render "$t" | sed "s/^\( *\)matchType: =$/\1matchType: '='/" >"$work/rendered/$name.yaml"
done

# 3. The CRD files, checked against their recorded checksums.
CRD_DIR=""
for d in "${KUBERNETES_CRD_DIR:-}" tests/fixtures/kubernetes/crds shared/fixtures/kubernetes/crds \
  ../shared/fixtures/kubernetes/crds; do
  if [ -n "$d" ] && [ -d "$d" ]; then CRD_DIR=$d; break; fi
done
if [ -n "$CRD_DIR" ]; then
  echo "== CRD schemas from $CRD_DIR"
  sums=$(pwd)/tests/fixtures/kubernetes/crds.sha256
  (cd "$CRD_DIR" && sha256sum --quiet -c "$sums")
elif [ "${KUBERNETES_CRDS_REQUIRED:-}" = "true" ]; then
  echo "validate-kubernetes: the CRD files are missing (tests/fixtures/kubernetes/README.md)" >&2
  exit 1
else
  echo "validate-kubernetes: SKIP CRD schema validation: CRD files not found (tests/fixtures/kubernetes/README.md)"
fi

# 2-6. One Python pass over the rendered files.
bin=${COMFY_SENTINEL_BIN:-}
# The newest build (cargo test builds target/debug; a stale one would fail the export diff).
if [ -z "$bin" ]; then
  for b in target/debug/comfy-sentinel target/release/comfy-sentinel; do
    if [ -x "$b" ] && { [ -z "$bin" ] || [ "$b" -nt "$bin" ]; }; then bin=$b; fi
  done
fi
[ -n "$bin" ] || missing "the comfy-sentinel binary (cargo build)" "comfy-sentinel check of the ConfigMaps"
have_promtool=1
command -v promtool >/dev/null 2>&1 || { have_promtool=0; missing promtool "promtool checks"; }

# The committed PrometheusRules are what the binary's export writes (CLI wiring end to end).
if [ -n "$bin" ]; then
  echo "== $bin rules export --format prometheus-operator"
  "$bin" rules export --format prometheus-operator --out "$work/export"
  diff -r "$work/export" "$K8S_DIR/base/rules" \
    || { echo "validate-kubernetes: deploy/kubernetes/base/rules is stale: rerun the export above" >&2; exit 1; }
fi

python3 - "$work" "$CRD_DIR" "$bin" "$have_promtool" "$K8S_DIR" <<'PY'
import copy, glob, os, re, subprocess, sys
import yaml, jsonschema

work, crd_dir, binary, have_promtool, k8s_dir = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
errors = []

class Loader(yaml.SafeLoader):
    """YAML without the 1.1 `=` value tag (the CRDs carry `=` in matchType enums)."""
Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:value"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

def strict(schema):
    """The API server's view of a structural schema as JSON Schema: an object with
    `properties` knows no other field unless it says x-kubernetes-preserve-unknown-fields
    or has additionalProperties of its own; `nullable` admits null;
    x-kubernetes-int-or-string admits both."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    s = {k: strict(v) if k in ("properties", "items", "additionalProperties", "allOf", "anyOf", "oneOf", "not") else v
         for k, v in schema.items()}
    if "properties" in s:
        s["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
    if s.get("x-kubernetes-int-or-string"):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    if s.get("type") == "object" and "properties" in s and "additionalProperties" not in s \
            and not s.get("x-kubernetes-preserve-unknown-fields"):
        s["additionalProperties"] = False
    return s

# CRD schemas by (apiVersion, kind).
crds = {}
for f in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))) if crd_dir else []:
    for doc in yaml.load_all(open(f), Loader=Loader):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for v in doc["spec"]["versions"]:
            if v.get("served"):
                crds[(f"{group}/{v['name']}", kind)] = (f, strict(v["schema"]["openAPIV3Schema"]))
if crd_dir:
    print(f"CRD schemas: {', '.join(sorted(f'{k} {a}' for a, k in crds))}")

META_KEYS = {"name", "namespace", "labels", "annotations"}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
custom_groups = {"monitoring.coreos.com", "keda.sh"}

def fail(where, msg):
    errors.append(f"{where}: {msg}")

rule_files, configs, builtin_docs = [], [], {}
for rendered in sorted(glob.glob(os.path.join(work, "rendered", "*.yaml"))):
    target = os.path.basename(rendered)[:-5]
    docs = [d for d in yaml.load_all(open(rendered), Loader=Loader) if d]
    builtin_docs[target] = []
    kinds = set()
    for d in docs:
        kind, api = d.get("kind"), d.get("apiVersion", "")
        name = d.get("metadata", {}).get("name", "?")
        where = f"{target}: {kind}/{name}"
        kinds.add(kind)
        group = api.split("/")[0] if "/" in api else ""
        if group in custom_groups and crd_dir:
            if (api, kind) not in crds:
                fail(where, f"no vendored CRD for {api} {kind}")
                continue
            meta = d.get("metadata", {})
            extra = set(meta) - META_KEYS
            if extra:
                fail(where, f"unexpected metadata fields {sorted(extra)}")
            if not NAME_RE.match(name) or len(name) > 253:
                fail(where, "metadata.name is not a DNS-1123 subdomain")
            schema = crds[(api, kind)][1]
            body = copy.deepcopy(d)
            body["metadata"] = {}
            for e in jsonschema.Draft7Validator(schema).iter_errors(body):
                fail(where, f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
        elif group not in custom_groups:
            builtin_docs[target].append(d)
        if kind == "PrometheusRule":
            path = os.path.join(work, f"rules-{target}-{name}.yaml")
            yaml.safe_dump({"groups": d["spec"]["groups"]}, open(path, "w"), sort_keys=False)
            rule_files.append(path)
        if kind == "ConfigMap" and "config.yaml" in d.get("data", {}):
            configs.append((where, d["data"]["config.yaml"]))
        if kind == "ScaledObject":
            # The CRD's one CEL rule (x-kubernetes-validations), which jsonschema cannot run.
            spec = d["spec"]
            if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
                fail(where, "minReplicaCount must be less than or equal to maxReplicaCount")
            for t in d["spec"]["triggers"]:
                if t["type"] == "prometheus":
                    rule_files.append(("expr", where, t["metadata"]["query"]))
        if kind == "Deployment":
            check_pod = d["spec"]["template"]["spec"]
            cs = {c["name"]: c for c in check_pod["containers"]}
            for cname in ("comfy-sentinel", "config-reloader"):
                c = cs.get(cname)
                if c is None:
                    fail(where, f"no {cname} container")
                    continue
                sc = c.get("securityContext", {})
                want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False, "privileged": False}
                for k, v in want.items():
                    if sc.get(k) is not v:
                        fail(where, f"{cname}: securityContext.{k} must be {v}")
                if (sc.get("runAsUser") or 0) < 10000:
                    fail(where, f"{cname}: runAsUser must be a high non-root UID")
                if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                    fail(where, f"{cname}: capabilities must drop ALL and add none")
                if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                    fail(where, f"{cname}: seccompProfile must be RuntimeDefault")
                lim = c.get("resources", {}).get("limits", {})
                if not lim.get("cpu") or not lim.get("memory"):
                    fail(where, f"{cname}: needs CPU and memory limits")
                if any(k.startswith("nvidia.com/") for k in lim):
                    fail(where, f"{cname}: must not request GPUs")
            s = cs.get("comfy-sentinel")
            if s:
                if s.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                    fail(where, "comfy-sentinel: liveness probe must be GET /healthz")
                if s.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                    fail(where, "comfy-sentinel: readiness probe must be GET /readyz")
                mounts = {m["mountPath"] for m in s.get("volumeMounts", [])}
                if "/var/lib/comfy-sentinel" not in mounts:
                    fail(where, "comfy-sentinel: data_dir needs a writable volume")
                env = {e["name"]: e.get("value") for e in s.get("env", [])}
                if env.get("NVIDIA_DRIVER_CAPABILITIES") != "utility":
                    fail(where, "comfy-sentinel: NVIDIA_DRIVER_CAPABILITIES must be utility (NVML only)")
            if check_pod.get("automountServiceAccountToken") is not False:
                fail(where, "the pod must not mount a service account token")
        if kind == "NetworkPolicy":
            for rule in d["spec"].get("ingress", []):
                ports = {p.get("port") for p in rule.get("ports", [])}
                if 9188 in ports:
                    for peer in rule.get("from", []):
                        ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
                        if ns != {"kubernetes.io/metadata.name": "monitoring"}:
                            fail(where, "port 9188 must be open to the monitoring namespace only")
    for need in ("Deployment", "Service", "ServiceMonitor", "NetworkPolicy", "PodDisruptionBudget",
                 "ConfigMap", "PrometheusRule", "AlertmanagerConfig"):
        if need not in kinds:
            fail(target, f"no {need}")
    with open(os.path.join(work, f"builtin-{target}.yaml"), "w") as out:
        yaml.safe_dump_all(builtin_docs[target], out, sort_keys=False)
    n_custom = len(docs) - len(builtin_docs[target])
    print(f"{target}: {len(docs)} objects, {n_custom} custom resources"
          + (" checked against their CRDs" if crd_dir else " (CRD schemas not checked)"))

# prometheus-adapter rules: the query with its template filled in must parse.
for values in sorted(glob.glob(os.path.join(k8s_dir, "overlays", "*", "prometheus-adapter-values.yaml"))):
    v = yaml.safe_load(open(values))
    for r in v.get("rules", {}).get("external", []) + v.get("rules", {}).get("custom", []):
        q = (r["metricsQuery"].replace("<<.Series>>", "comfyui_queue_pending")
             .replace("<<.LabelMatchers>>", 'namespace="comfyui",job="comfyui"')
             .replace("<<.GroupBy>>", "namespace"))
        rule_files.append(("expr", values, q))
        rule_files.append(("expr", values, r["seriesQuery"]))

def run(cmd, where):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        fail(where, f"{' '.join(cmd)}:\n{p.stdout}{p.stderr}")
    return p

if have_promtool:
    exprs = [r for r in rule_files if isinstance(r, tuple)]
    files = [r for r in rule_files if not isinstance(r, tuple)]
    if exprs:
        path = os.path.join(work, "queries.yaml")
        yaml.safe_dump({"groups": [{"name": "autoscaling-queries", "rules": [
            {"record": f"autoscaling_query_{i}", "expr": q} for i, (_, _, q) in enumerate(exprs)]}]},
            open(path, "w"), sort_keys=False)
        files.append(path)
    for f in files:
        run(["promtool", "check", "rules", f], f)
    print(f"promtool check rules: {len(files)} files ({len(exprs)} autoscaling queries)")

# comfy-sentinel check on every ConfigMap config, secret files pointed at stand-ins.
if binary:
    secrets = os.path.join(work, "secrets")
    os.makedirs(secrets, exist_ok=True)
    for k, v in {"ingest-token": "t0ken", "smtp-password": "pw",
                 "webhook-secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}.items():
        open(os.path.join(secrets, k), "w").write(v + "\n")
    seen = set()
    for i, (where, text) in enumerate(configs):
        if text in seen:
            continue
        seen.add(text)
        text = text.replace("/etc/comfy-sentinel/secrets", secrets) \
                   .replace("/var/lib/comfy-sentinel", os.path.join(work, f"data{i}"))
        path = os.path.join(work, f"config{i}.yaml")
        open(path, "w").write(text)
        run([binary, "check", "--config", path], where)
    print(f"comfy-sentinel check: {len(seen)} distinct configs")

if errors:
    print("\n".join(f"ERROR {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
PY

# 2. Built-in kinds against the Kubernetes API schemas.
if command -v kubernetes-validate >/dev/null 2>&1; then
  for v in $KUBERNETES_VERSIONS; do
    for f in "$work"/builtin-*.yaml; do
      echo "== kubernetes-validate --strict -k $v $(basename "$f")"
      kubernetes-validate --strict --quiet -k "$v" "$f"
    done
  done
else
  missing kubernetes-validate "Kubernetes schema validation"
fi

# 7. checkov.
checkov_bin=$(command -v checkov || true)
[ -n "$checkov_bin" ] || for c in "${XDG_CACHE_HOME:-$HOME/.cache}/comfy-sentinel/checkov/bin/checkov"; do
  [ -x "$c" ] && checkov_bin=$c
done
if [ -n "$checkov_bin" ]; then
  echo "== checkov ($("$checkov_bin" --version))"
  # BC_SKIP_MAPPING: no download of the platform's guideline mapping (no network here).
  BC_SKIP_MAPPING=TRUE "$checkov_bin" -d "$work/rendered" --config-file .checkov.yaml
else
  missing checkov "checkov scan"
fi
echo "kubernetes manifests: all checks passed"
