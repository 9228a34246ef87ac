#!/usr/bin/env python3
"""The Helm chart (deploy/helm/fathom), rendered by helm_render.py with its defaults and with
every option on, checked as Kubernetes would read it and against the real `fathom serve`:
  - every object has a known apiVersion/kind and a valid name; selectors match the pod labels;
    the Service, Ingress and ServiceMonitor name ports that exist;
  - the container's arguments are options `fathom serve --help` lists, its --port is the
    container port the probes use, the probes read /health, the startup probe allows
    probes.startupSeconds, terminationGracePeriodSeconds covers preStop + --shutdown-timeout,
    the liveness probe outlasts a drain;
  - every file the arguments name (model, API keys, audit log, --kv-persist) is on a mounted
    volume, every volume exists (rendered or named as existing);
  - the HPA's metric is one a live `fathom serve` exports at /metrics;
  - values the chart cannot honour (kvPersist on a Deployment) fail the render with a message.
With a reachable cluster, kubectl also validates the default render (--dry-run=client needs the
API server's discovery; without one that step is skipped and said so).
usage: chart_test.py FATHOM_BINARY
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helm_render  # noqa: E402
from serve_cli import report, serve_options, unknown_options  # noqa: E402

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "helm", "fathom")
KINDS = {("v1", "Service"), ("v1", "Secret"), ("v1", "PersistentVolumeClaim"), ("apps/v1", "Deployment"),
         ("apps/v1", "StatefulSet"), ("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "Ingress"),
         ("monitoring.coreos.com/v1", "ServiceMonitor"), ("autoscaling/v2", "HorizontalPodAutoscaler")}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
ALL_ON = ["kind=StatefulSet", "kvPersist.enabled=true", "apiKeys.keys=[key-one, key-two]", "auditLog.enabled=true",
          "autoscaling.enabled=true", "ingress.enabled=true", "ingress.tlsSecret=llm-tls",
          "serviceMonitor.enabled=true", "server.device=cuda", "server.gpuLayers=99", "server.cpuMoe=true",
          "server.threads=8", "server.extraArgs=[--step-budget, '1024']", 'nodeSelector={gpu: "nvidia"}',
          "resources={limits: {nvidia.com/gpu: 1, memory: 64Gi}}", "model.volume.storageClassName=fast",
          "kvPersist.storageClassName=fast"]
EXISTING = ["apiKeys.existingSecret=my-keys", "model.volume.existingClaim=my-models", "model.pull=''",
            "model.alias=''", "podDisruptionBudget.enabled=false"]



def live_metric_names(fathom, work):
    model = os.path.join(work, "tiny.gguf")
    subprocess.run([fathom, "synth", "--arch", "llama", "--preset", "tiny", "-o", model], check=True,
                   capture_output=True)
    server = subprocess.Popen([fathom, "serve", "-m", model, "--port", "0", "-t", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        port = re.search(r"listening on http://[\d.]+:(\d+)", server.stdout.readline()).group(1)
        for _ in range(100):
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                return {line.split(" ")[0].split("{")[0] for line in text.splitlines() if line and line[0] != "#"}
            except OSError:
                time.sleep(0.1)
        raise SystemExit("fathom serve: no /metrics")
    finally:
        server.terminate()
        server.wait()


def check(docs, sets, options, metrics):
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(f"[{' '.join(sets) or 'defaults'}] {what}")

    by_kind = {}
    for d in docs:
        need((d["apiVersion"], d["kind"]) in KINDS, f"unknown {d['apiVersion']} {d['kind']}")
        name = d["metadata"]["name"]
        need(len(name) <= 63 and DNS_LABEL.fullmatch(name), f"{d['kind']} name {name!r} is not a DNS label")
        by_kind.setdefault(d["kind"], []).append(d)
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    need(len(workloads) == 1, "one Deployment or StatefulSet")
    w = workloads[0]
    pod = w["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    selector = w["spec"]["selector"]["matchLabels"]
    need(selector.items() <= pod_labels.items(), "the workload's selector does not match its pod labels")
    spec = pod["spec"]
    c = next(c for c in spec["containers"] if c["name"] == "fathom")
    args = c["args"]
    need(args[0] == "serve", "the container does not run `fathom serve`")
    for a in unknown_options(args[1:], options):
        need(False, f"{a} is not an option of fathom serve")
    arg = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")}
    port = int(arg["--port"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    need(ports.get("http") == port, f"container port http is not --port {port}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        need(get["path"] == "/health" and get["port"] == "http", f"{probe} does not read /health on http")
    values = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))
    for s in sets:
        helm_render.set_value(values, s)
    startup = c["startupProbe"]
    need(startup["periodSeconds"] * startup["failureThreshold"] >= values["probes"]["startupSeconds"],
         "the startup probe gives up before probes.startupSeconds")
    shutdown = int(arg["--shutdown-timeout"])
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    # The server's exit is bounded by --shutdown-timeout plus about 1 s (src/server/README.md).
    need(spec["terminationGracePeriodSeconds"] >= pre_stop + shutdown + 2,
         "terminationGracePeriodSeconds does not cover preStop + --shutdown-timeout")
    live = c["livenessProbe"]
    need(live["periodSeconds"] * live["failureThreshold"] > pre_stop + shutdown, "liveness fails during a drain")
    need(shutdown == values["server"]["shutdownTimeoutSeconds"], "--shutdown-timeout is not the value")

    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    volumes.update({t["metadata"]["name"]: t for t in w["spec"].get("volumeClaimTemplates", [])})
    for m in list(c["volumeMounts"]) + [m for i in spec.get("initContainers", []) for m in i["volumeMounts"]]:
        need(m["name"] in volumes, f"volume {m['name']} is mounted but not defined")

    def on_mount(path, volume):
        need(volume in mounts and path.startswith(mounts[volume] + "/"), f"{path} is not on volume {volume}")

    on_mount(arg["--model"], "models")
    if "--api-key-file" in arg:
        on_mount(arg["--api-key-file"], "api-keys")
        secret = volumes["api-keys"]["secret"]["secretName"]
        rendered = [s for s in by_kind.get("Secret", []) if s["metadata"]["name"] == secret]
        need(rendered or secret == values["apiKeys"]["existingSecret"], f"Secret {secret} is neither rendered nor existing")
        for s in rendered:
            need(s["stringData"]["keys"].split() == values["apiKeys"]["keys"], "the Secret does not hold the keys")
            need(os.path.basename(arg["--api-key-file"]) in s["stringData"], "the key file is not in the Secret")
    need(("--api-key-file" in arg) == bool(values["apiKeys"]["keys"] or values["apiKeys"]["existingSecret"]),
         "API keys configured but not passed (or the reverse)")
    if "--audit-log" in arg:
        on_mount(arg["--audit-log"], "audit")
    if "--kv-persist" in arg:
        need(w["kind"] == "StatefulSet", "--kv-persist on a Deployment")
        need(mounts.get("kv") == arg["--kv-persist"], "--kv-persist is not the kv volume")
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    need(any(p["metadata"]["name"] == claim for p in by_kind.get("PersistentVolumeClaim", []))
         or claim == values["model"]["volume"]["existingClaim"], f"claim {claim} is neither rendered nor existing")
    for init in spec.get("initContainers", []):
        env = {e["name"]: e["value"] for e in init["env"]}
        need(init["args"] == ["pull", values["model"]["pull"]], "the init container does not pull model.pull")
        need(env.get("FATHOM_MODELS") == init["volumeMounts"][0]["mountPath"] == mounts["models"],
             "FATHOM_MODELS is not the model volume")
    need(bool(spec.get("initContainers")) == bool(values["model"]["pull"]), "model.pull and the init step disagree")

    services = by_kind["Service"]
    svc = services[0]
    need(svc["spec"]["selector"].items() <= pod_labels.items(), "the Service selects no pod")
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    need(all(p["targetPort"] in ports for p in svc["spec"]["ports"]), "a Service targetPort is no container port")
    if w["kind"] == "StatefulSet":
        need(w["spec"]["serviceName"] == svc["metadata"]["name"], "the StatefulSet's serviceName is no Service")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        need(pdb["spec"]["selector"]["matchLabels"] == selector, "the PodDisruptionBudget selects other pods")
        need(pdb["spec"]["minAvailable"] < values["replicaCount"] or values["autoscaling"]["enabled"],
             "the PodDisruptionBudget blocks every eviction")
    for ing in by_kind.get("Ingress", []):
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        need(backend["name"] == svc["metadata"]["name"] and backend["port"]["name"] in svc_ports,
             "the Ingress backend is not the Service's http port")
        need(ing["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/proxy-buffering") == "off",
             "the Ingress buffers streams")
    for sm in by_kind.get("ServiceMonitor", []):
        need(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
             "the ServiceMonitor selects no Service")
        need(all(e["port"] in svc_ports and e["path"] == "/metrics" for e in sm["spec"]["endpoints"]),
             "the ServiceMonitor does not scrape /metrics on a Service port")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        need(ref["kind"] == w["kind"] and ref["name"] == w["metadata"]["name"], "the HPA scales another object")
        need("replicas" not in w["spec"], "replicas set although the HPA owns it")
        for m in hpa["spec"]["metrics"]:
            need(m["pods"]["metric"]["name"] in metrics, f"HPA metric {m['pods']['metric']['name']} is not exported")
    return problems


def kubectl_validate(manifests):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return "kubectl validation skipped: no kubectl"
    probe = subprocess.run([kubectl, "version", "--request-timeout=3s"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "kubectl validation skipped: no reachable cluster (--dry-run=client needs the API server's discovery)"
    r = subprocess.run([kubectl, "create", "--dry-run=client", "-o", "name", "-f", "-"], input=manifests,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kubectl rejects the chart: {r.stderr}")
    return f"kubectl create --dry-run=client accepts: {' '.join(r.stdout.split())}"


def main():
    fathom = sys.argv[1]
    options = serve_options(fathom)
    with tempfile.TemporaryDirectory() as work:
        metrics = live_metric_names(fathom, work)
    problems = []
    for sets in ([], ALL_ON, EXISTING):
        manifests = helm_render.render(CHART, sets)
        docs = [d for d in yaml.safe_load_all(manifests) if d]
        problems += check(docs, sets, options, metrics)
        print(f"{' '.join(sets) or 'defaults'}: {', '.join(sorted(d['kind'] for d in docs))}")
    for bad, message in ((["kvPersist.enabled=true"], "kvPersist.enabled needs kind: StatefulSet"),
                         (["kind=DaemonSet"], "kind must be Deployment or StatefulSet")):
        try:
            helm_render.render(CHART, bad)
            problems.append(f"{bad} rendered instead of failing")
        except helm_render.Fail as e:
            if message not in str(e):
                problems.append(f"{bad} failed with {e}")
    print(kubectl_validate(helm_render.render(CHART)))
    report("chart", problems)


if __name__ == "__main__":
    main()
