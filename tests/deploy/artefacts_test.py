#!/usr/bin/env python3
"""The artefacts that cannot run here (no Docker daemon, no systemd as init), checked against
the repository and the real `fathom serve`:
  - deploy/docker/Dockerfile builds with the repository's own steps: every file it copies exists
    and is not excluded by .dockerignore, the scripts it runs exist and parse, `make build` is
    a Makefile target, every -D option it passes is declared by the CMake files, and the
    runtime-package step finds the Debian package of each library the built binary loads;
  - deploy/compose.yaml: the replicas' options are `fathom serve` options, the grace period
    covers --shutdown-timeout, mounted files exist, Prometheus's targets, nginx's replica list,
    Grafana's datasources and promtail's paths name what the compose file defines;
  - deploy/systemd/fathom.service passes `systemd-analyze verify` (where systemd-analyze exists),
    its options are `fathom serve` options, its variables are defined, and TimeoutStopSec covers
    --shutdown-timeout.
usage: artefacts_test.py FATHOM_BINARY
"""
import fnmatch
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_cli import report, serve_options, unknown_options  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
problems = []


def need(cond, what):
    if not cond:
        problems.append(what)



def check_options(where, args, options):
    for a in unknown_options(args, options):
        problems.append(f"{where}: {a} is not an option of fathom serve")


def arg_value(args, flag):
    return args[args.index(flag) + 1]


def cmake_options():
    declared = set()
    for f in glob.glob(os.path.join(ROOT, "CMakeLists.txt")) + glob.glob(os.path.join(ROOT, "src", "**", "*.cmake"),
                                                                           recursive=True):
        text = open(f).read()
        declared |= set(re.findall(r"option\((\w+)", text)) | set(re.findall(r"set\((\w+)[^)]*CACHE", text))
    return declared


def dockerfile(fathom):
    path = os.path.join(DEPLOY, "docker", "Dockerfile")
    lines = re.sub(r"\\\n", " ", open(path).read()).splitlines()
    ignore = [p for p in open(os.path.join(ROOT, ".dockerignore")).read().split() if not p.startswith("#")]
    steps = [l.split(None, 1) for l in lines if l.strip() and not l.startswith("#")]
    need(any(s[0] == "USER" and s[1].strip() not in ("root", "0") for s in steps), "Dockerfile: no non-root USER")
    need(any(s[0] == "HEALTHCHECK" and "/health" in s[1] for s in steps), "Dockerfile: no HEALTHCHECK on /health")
    variant_script = os.path.join(DEPLOY, "docker", "variant.sh")
    for kind, rest in steps:
        if kind == "COPY" and "--from=" not in rest:
            for src in shlex.split(rest)[:-1]:
                need(src == "." or os.path.exists(os.path.join(ROOT, src)), f"Dockerfile copies missing {src}")
                need(not any(fnmatch.fnmatch(src, p) for p in ignore), f"Dockerfile copies {src}, which .dockerignore excludes")
        if kind == "RUN":
            for script in re.findall(r"(?:scripts|deploy)/[\w./-]+\.sh", rest):
                need(os.access(os.path.join(ROOT, script), os.X_OK), f"Dockerfile runs {script}: missing or not executable")
            if "make build" in rest:
                need(re.search(r"^build:", open(os.path.join(ROOT, "Makefile")).read(), re.M),
                     "Dockerfile runs `make build`, which the Makefile lacks")
    for script in (variant_script, os.path.join(ROOT, "scripts", "install-deps.sh")):
        r = subprocess.run(["sh" if script.endswith("variant.sh") else "bash", "-n", script], capture_output=True, text=True)
        need(r.returncode == 0, f"{script} does not parse: {r.stderr}")
    declared = cmake_options()
    flags = " ".join(l for l in lines if "CMAKE_FLAGS" in l)
    for variant in ("cpu", "cuda", "opencl"):
        flags += " " + subprocess.run([variant_script, "cmake-flags", variant], capture_output=True, text=True,
                                      check=True).stdout
    for option in set(re.findall(r"-D(FATHOM_\w+)=", flags)):
        need(option in declared, f"Dockerfile passes -D{option}, which no CMake file declares")
    # The runtime image installs the packages of the binary's libraries. A binary that loads a
    # library from outside Debian (this machine's CUDA) cannot be checked that way.
    outside = [l for l in subprocess.run(["ldd", fathom], capture_output=True, text=True).stdout.splitlines()
               if "/usr/local/" in l or "/opt/" in l]
    if outside:
        print(f"runtime-packages step skipped: the binary loads libraries from outside Debian ({outside[0].split()[0]}, ...)")
        return
    r = subprocess.run([variant_script, "runtime-packages", "cpu", fathom], capture_output=True, text=True)
    need(r.returncode == 0, f"variant.sh runtime-packages: {r.stderr}")
    for pkg in r.stdout.split():
        state = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True).stdout
        need("install ok installed" in state or pkg == "curl", f"runtime package {pkg} is not an installed package")
    print(f"runtime image packages: {' '.join(r.stdout.split())}")


def compose(options):
    c = yaml.safe_load(open(os.path.join(DEPLOY, "compose.yaml")))
    services = c["services"]
    replicas = [n for n, s in services.items() if s.get("command", [None])[0] == "serve"]
    need(len(replicas) == 2, f"compose: {len(replicas)} replicas, not 2")
    for name in replicas:
        s = services[name]
        args = [a.split("${")[0] if "${" in a else a for a in s["command"]]
        check_options(f"compose {name}", args[1:], options)
        shutdown = int(arg_value(s["command"], "--shutdown-timeout"))
        need(int(s["stop_grace_period"].rstrip("s")) >= shutdown + 2, f"compose {name}: stop_grace_period < --shutdown-timeout")
        need(s["depends_on"]["pull-model"]["condition"] == "service_completed_successfully", "replicas do not wait for the pull")
    need(services["pull-model"]["command"][0] == "pull", "compose: pull-model does not run fathom pull")
    for name, s in services.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                need(os.path.exists(os.path.join(DEPLOY, src)), f"compose {name} mounts missing {src}")
            else:
                need(src in c["volumes"], f"compose {name} mounts undeclared volume {src}")
    prom = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")))
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    need(sorted(targets) == sorted(f"{n}:{arg_value(services[n]['command'], '--port')}" for n in replicas),
         f"prometheus.yml targets {targets} are not the compose replicas")
    nginx_cmd = " ".join(services["nginx"]["command"])
    nginx_conf = open(os.path.join(DEPLOY, "nginx", "fathom.conf")).read()
    for old, new in re.findall(r"s/([\d.:]+)/([\w:-]+)/", nginx_cmd):
        need(f"server {old} " in nginx_conf, f"compose nginx replaces {old}, which fathom.conf does not list")
        need(new.split(":")[0] in replicas, f"compose nginx points at {new}, no replica")
    ds = yaml.safe_load(open(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "fathom.yml")))
    for d in ds["datasources"]:
        need(re.match(r"http://([\w-]+):", d["url"]).group(1) in services, f"Grafana datasource {d['url']} is no service")
    dash = yaml.safe_load(open(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "fathom.yml")))
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    need(mounts.get("./grafana/dashboards") == dash["providers"][0]["options"]["path"], "Grafana reads dashboards elsewhere")
    promtail = yaml.safe_load(open(os.path.join(DEPLOY, "audit", "promtail.yml")))
    pattern = promtail["scrape_configs"][0]["static_configs"][0]["labels"]["__path__"]
    for v in services["promtail"]["volumes"]:
        volume, target = v.split(":")[:2]
        if volume.startswith("audit-"):
            replica = next(n for n in replicas if f"{volume}:/var/log/fathom" in services[n]["volumes"])
            log = arg_value(services[replica]["command"], "--audit-log")
            need(fnmatch.fnmatch(target + "/" + os.path.basename(log), pattern), f"promtail does not read {target}")
    print(f"compose: services {', '.join(services)}")


def systemd(fathom, options):
    unit_path = os.path.join(DEPLOY, "systemd", "fathom.service")
    unit = open(unit_path).read()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.M | re.S).group(1).replace("\\\n", " ")
    args = exec_start.split()
    need(args[1] == "serve", "the unit does not run fathom serve")
    check_options("fathom.service", args[2:], options)
    env = dict(l.split("=", 1) for l in open(os.path.join(DEPLOY, "systemd", "fathom.env")).read().splitlines()
               if l and not l.startswith("#"))
    provided = {"CREDENTIALS_DIRECTORY", "LOGS_DIRECTORY", "STATE_DIRECTORY"}
    for var in re.findall(r"\$\{?(\w+)", exec_start):
        need(var in env or var in provided, f"fathom.service uses ${var}, which fathom.env does not define")
    shutdown = int(arg_value(args, "--shutdown-timeout"))
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))
    need(stop >= shutdown + 2, "TimeoutStopSec does not cover --shutdown-timeout")
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("systemd-analyze verify skipped: no systemd-analyze")
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "fathom.service")
        open(copy, "w").write(unit.replace("/usr/local/bin/fathom", os.path.abspath(fathom)))
        r = subprocess.run([analyze, "verify", copy], capture_output=True, text=True)
        need(r.returncode == 0 and "fathom.service" not in r.stderr, f"systemd-analyze verify: {r.stderr}")
    print("systemd-analyze verify: fathom.service accepted")


def main():
    fathom = sys.argv[1]
    options = serve_options(fathom)
    dockerfile(fathom)
    compose(options)
    systemd(fathom, options)
    report("artefacts", problems)


if __name__ == "__main__":
    main()
