#!/usr/bin/env python3
"""Keeps deploy/ true to the code, offline, with neither Helm nor Kubernetes nor Prometheus.

Facts are read from the sources: metric families (name and type) and their labels from
coordinator/request_metrics.cc and worker/engine_metrics.cc, flags from the ABSL_FLAG lines of
coordinator/coordinator_main.cc and worker/worker_main.cc. Then:

- Helm chart: Chart.yaml and values.yaml parse; every template's actions are balanced; every
  .Values path a template reads exists in values.yaml; every included template is defined; every
  --flag= a template passes is a flag of the process that template runs, and the flags the chart
  promises are all passed; the coordinator's probes are gRPC probes on its port and the workers'
  liveness is TCP on the metrics port; the coordinator port agrees with the flag's default and
  the image's EXPOSE.
- Grafana dashboard: the JSON parses, has a `pool` variable and unique panel ids; every query
  filters by pool.
- Prometheus rules: the YAML parses; every rule is a recording rule or an alert with its parts;
  recording rule names are level:metric:operations over a real metric; every recorded series an
  expression uses is defined.
- Everywhere in the dashboard, the rules and deploy/'s READMEs: every shardserve_ name is a series
  the code exports (a counter or gauge by its name, a histogram only as _bucket, _sum or _count),
  every label a query or annotation uses is one the code sets (or le, or a scrape target label),
  and every --snake_case flag the READMEs name is a coordinator or worker flag.

Run it from the repository root (`python3 deploy/deploy_test.py`) or as //deploy:deploy_test.
Ends with a line "N passed, N failed".
"""
import json
import os
import re
import sys

try:
    import yaml
except ImportError:
    print("deploy_test: PyYAML is missing (Debian: python3-yaml, which tools/setup.sh installs)")
    print("0 passed, 1 failed")
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = "deploy/helm/shardserve"
DASHBOARD = "deploy/grafana/shardserve-dashboard.json"
RULES = "deploy/prometheus/shardserve-rules.yaml"
READMES = ["deploy/README.md", CHART + "/README.md"]
METRIC_SOURCES = ["coordinator/request_metrics.cc", "worker/engine_metrics.cc"]
COORDINATOR_MAIN = "coordinator/coordinator_main.cc"
WORKER_MAIN = "worker/worker_main.cc"

# Labels Prometheus attaches to every scraped series (instance, job), the ones Kubernetes
# service discovery and the Prometheus Operator add (namespace, pod, service, container,
# endpoint), and the chart's ServiceMonitor target label (component).
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint",
                 "component"}
# PromQL keywords that can stand before "(" like a function and are followed by label lists.
LABEL_LIST_KEYWORDS = r"\b(?:by|without|on|ignoring|group_left|group_right)"

# The flags the chart promises to pass (its values name them), by process.
EXPECTED_COORDINATOR_FLAGS = {
    "host", "port", "metrics_port", "model", "served_model_name", "groups", "prefill_groups",
    "decode_groups", "tp", "pp", "ep", "moe_combine", "prefill_tp", "prefill_pp", "prefill_ep",
    "decode_tp", "decode_pp", "decode_ep", "heartbeat_timeout", "wait_for_workers",
    "max_inflight_per_group"}
EXPECTED_WORKER_FLAGS = {
    "coordinator", "pool", "device", "threads", "host", "service_port", "metrics_port",
    "kv_cache_bytes", "kv_cache_dtype", "max_num_seqs", "max_num_batched_tokens", "max_waiting",
    "group_timeout"}

failures = []
passed = 0


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def check(name, problems):
    """Records one named check: passed when `problems` is empty."""
    global passed
    if problems:
        failures.append(name)
        print("FAIL %s" % name)
        for p in problems:
            print("  - %s" % p)
    else:
        passed += 1
        print("ok   %s" % name)


# ---------------------------------------------------------------------------------------------
# Facts from the code.

def metric_families():
    """name -> "histogram" | "counter" | "gauge", from the metric sources."""
    families = {}
    problems = []
    pattern = re.compile(
        r'(Histogram\(registry,|Counter\(registry,|Gauge\(registry,|BuildHistogram\(\)|BuildCounter\(\)|'
        r'BuildGauge\(\))\s*(?:\.Name\()?\s*"(shardserve_[a-z0-9_]+)"')
    for path in METRIC_SOURCES:
        text = read(path)
        for m in pattern.finditer(text):
            kind = ("histogram" if "Histogram" in m.group(1)
                    else "counter" if "Counter" in m.group(1) else "gauge")
            if families.get(m.group(2), kind) != kind:
                problems.append("%s is registered as %s and as %s" %
                                (m.group(2), families[m.group(2)], kind))
            families[m.group(2)] = kind
        for name in re.findall(r'"(shardserve_[a-z0-9_]+)"', text):
            if name not in families:
                problems.append("%s: cannot tell the type of %s (update this test's parser)" %
                                (path, name))
    if not families:
        problems.append("no metric families found in %s" % ", ".join(METRIC_SOURCES))
    return families, problems


def metric_labels():
    labels = set()
    for path in METRIC_SOURCES:
        text = read(path)
        labels |= set(re.findall(r'\{\s*"([a-z_]+)",', text))
        labels |= set(re.findall(r'\[\s*"([a-z_]+)"\s*\]', text))
    return labels


def absl_flags(path):
    """name -> default value text, from ABSL_FLAG(type, name, default, help) lines."""
    return dict(re.findall(r"ABSL_FLAG\(\s*[\w:]+\s*,\s*(\w+)\s*,\s*([^,]+),", read(path)))


FAMILIES, family_problems = metric_families()
LABELS = metric_labels()
ALLOWED_LABELS = LABELS | {"le"} | TARGET_LABELS
COORDINATOR_FLAGS = absl_flags(COORDINATOR_MAIN)
WORKER_FLAGS = absl_flags(WORKER_MAIN)

check("code: metric families and labels are readable",
      family_problems + ([] if {"pool", "group"} <= LABELS else
                         ["labels pool and group not found in the metric sources"]))
check("code: flags are readable",
      [] if COORDINATOR_FLAGS and WORKER_FLAGS else ["no ABSL_FLAG found"])


def is_series(name):
    """True when `name` is a series the code exports."""
    kind = FAMILIES.get(name)
    if kind in ("counter", "gauge"):
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and FAMILIES.get(name[:-len(suffix)]) == "histogram":
            return True
    return False


def describe(name):
    kind = FAMILIES.get(name)
    if kind == "histogram":
        return "%s is a histogram: use %s_bucket, _sum or _count" % (name, name)
    return "%s is not exported by %s" % (name, " or ".join(METRIC_SOURCES))


METRIC_NAME = re.compile(r"(?<![\w:])shardserve_[a-z0-9_]+")
RECORDED_NAME = re.compile(r"(?<![\w:])[a-z_]+:[a-z0-9_]+:[a-z0-9_]+")


def metric_name_problems(text, where):
    return ["%s: %s" % (where, describe(n)) for n in sorted(set(METRIC_NAME.findall(text)))
            if not is_series(n)]


def promql_label_problems(expr, where):
    """Labels in matchers and label lists of a PromQL expression must be known ones."""
    used = set()
    for body in re.findall(r"\{([^{}]*)\}", expr):
        used |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body))
    for body in re.findall(LABEL_LIST_KEYWORDS + r"\s*\(([^()]*)\)", expr):
        used |= {l.strip() for l in body.split(",") if l.strip()}
    for _, label in re.findall(r"label_values\(([^,()]*),\s*(\w+)\)", expr):
        used.add(label)
    used.discard("__name__")
    return ["%s: label %s is not set by the code nor by scraping" % (where, l)
            for l in sorted(used - ALLOWED_LABELS)]


# ---------------------------------------------------------------------------------------------
# Helm chart.

def chart_checks():
    chart = yaml.safe_load(read(CHART + "/Chart.yaml"))
    problems = []
    for key, want in (("apiVersion", "v2"), ("name", "shardserve")):
        if chart.get(key) != want:
            problems.append("Chart.yaml: %s is %r, want %r" % (key, chart.get(key), want))
    for key in ("version", "appVersion"):
        if not chart.get(key):
            problems.append("Chart.yaml: %s is missing" % key)
    check("chart: Chart.yaml", problems)

    values = yaml.safe_load(read(CHART + "/values.yaml"))
    check("chart: values.yaml parses", [] if isinstance(values, dict) else ["not a mapping"])
    problems = []
    for pool in ("both", "prefill", "decode"):
        keys = ("groups",) if pool == "both" else ("groups", "tp", "pp", "ep")
        for key in keys:
            if key not in values.get("pools", {}).get(pool, {}):
                problems.append("values.yaml: pools.%s.%s is missing" % (pool, key))
    check("chart: every pool has its layout values", problems)

    template_dir = os.path.join(ROOT, CHART, "templates")
    templates = {name: read(os.path.join(CHART, "templates", name))
                 for name in sorted(os.listdir(template_dir))}
    defined = set()
    for text in templates.values():
        defined |= set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', text))

    balance, value_paths, includes, flag_problems = [], [], [], []
    coordinator_flags_used, worker_flags_used = set(), set()
    for name, text in templates.items():
        code = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.S)  # comments
        if code.count("{{") != code.count("}}"):
            balance.append("%s: %d '{{' but %d '}}'" % (name, code.count("{{"), code.count("}}")))
        opened = len(re.findall(r"\{\{-?\s*(?:if|range|with|define|block)\b", code))
        closed = len(re.findall(r"\{\{-?\s*end\s*-?\}\}", code))
        if opened != closed:
            balance.append("%s: %d blocks opened, %d ended" % (name, opened, closed))

        for path in re.findall(r"\.Values((?:\.[A-Za-z_]\w*)+)", code):
            node = values
            for key in path.strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    value_paths.append("%s: .Values%s is not in values.yaml" % (name, path))
                    break
                node = node[key]
        for ref in re.findall(r'\b(?:include|template)\s+"([^"]+)"', code):
            if ref not in defined:
                includes.append("%s: template %r is not defined" % (name, ref))

        if name == "NOTES.txt":
            continue  # its --flags are the CLI's, shown to the user, not passed
        for flag in re.findall(r"--([a-z][a-z0-9_]*)=", code):
            if "coordinator" in name:
                known, used = COORDINATOR_FLAGS, coordinator_flags_used
            elif "worker" in name:
                known, used = WORKER_FLAGS, worker_flags_used
            else:
                flag_problems.append("%s passes --%s but runs no process" % (name, flag))
                continue
            used.add(flag)
            if flag not in known:
                flag_problems.append("%s: --%s is not an ABSL_FLAG of %s" % (
                    name, flag, COORDINATOR_MAIN if known is COORDINATOR_FLAGS else WORKER_MAIN))
    for flag in sorted(EXPECTED_COORDINATOR_FLAGS - coordinator_flags_used):
        flag_problems.append("the coordinator template does not pass --%s" % flag)
    for flag in sorted(EXPECTED_WORKER_FLAGS - worker_flags_used):
        flag_problems.append("the worker template does not pass --%s" % flag)
    check("chart: template actions are balanced", balance)
    check("chart: every .Values path exists in values.yaml", value_paths)
    check("chart: every included template is defined", includes)
    check("chart: every flag passed is the process's ABSL_FLAG, and all are passed", flag_problems)

    problems = []
    coordinator = templates.get("coordinator-deployment.yaml", "")
    probe = r"%s:\s*\n\s*grpc:\s*\n\s*port: \{\{ int \.Values\.coordinator\.port \}\}"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if not re.search(probe % kind, coordinator):
            problems.append("coordinator %s is not a grpc probe on coordinator.port" % kind)
    worker = templates.get("worker-statefulset.yaml", "")
    if not re.search(r"livenessProbe:\s*\n\s*tcpSocket:\s*\n\s*port: metrics\b", worker):
        problems.append("worker livenessProbe is not tcpSocket on the metrics port")
    if "nvidia.com/gpu" not in worker:
        problems.append("worker template requests no nvidia.com/gpu")
    default_port = COORDINATOR_FLAGS.get("port", "").strip()
    if str(values["coordinator"]["port"]) != default_port:
        problems.append("values coordinator.port %s != --port default %s" %
                        (values["coordinator"]["port"], default_port))
    exposed = re.findall(r"^EXPOSE\s+(\d+)", read("deploy/container/Dockerfile"), flags=re.M)
    if str(values["coordinator"]["port"]) not in exposed:
        problems.append("values coordinator.port %s is not EXPOSEd by deploy/container/Dockerfile"
                        % values["coordinator"]["port"])
    check("chart: probes and ports", problems)


# ---------------------------------------------------------------------------------------------
# Grafana dashboard.

def dashboard_checks():
    text = read(DASHBOARD)
    dashboard = json.loads(text)
    problems = []
    if not 36 <= dashboard.get("schemaVersion", 0) <= 41:
        problems.append("schemaVersion %r is not 36..41" % dashboard.get("schemaVersion"))
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    if "pool" not in variables:
        problems.append("no `pool` template variable")
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    check("dashboard: structure", problems)

    problems, label_problems = [], []
    queries = 0
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append("panel %r has no query" % panel.get("title"))
        for t in targets:
            queries += 1
            expr, where = t.get("expr", ""), "panel %r" % panel.get("title")
            for m in re.finditer(r"(?<![\w:])shardserve_[a-z0-9_]+(\{[^{}]*\})?", expr):
                if not m.group(1) or 'pool=~"$pool"' not in m.group(1):
                    problems.append("%s: %s is not filtered by pool=~\"$pool\"" %
                                    (where, m.group(0)))
            label_problems += promql_label_problems(expr, where)
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
                if label not in ALLOWED_LABELS:
                    label_problems.append("%s: legend label %s is not set" % (where, label))
            for name in RECORDED_NAME.findall(expr):
                problems.append("%s: uses recorded series %s (the dashboard must not need the "
                                "rules)" % (where, name))
    for name, v in variables.items():
        query = v.get("definition") or ""
        label_problems += promql_label_problems(query, "variable %s" % name)
    if queries == 0:
        problems.append("no queries")
    check("dashboard: every query filters by pool", problems)
    check("dashboard: every label used is set", label_problems)
    check("dashboard: every shardserve_ name is an exported series",
          metric_name_problems(text, DASHBOARD))


# ---------------------------------------------------------------------------------------------
# Prometheus rules.

def rules_checks():
    text = read(RULES)
    doc = yaml.safe_load(text)
    problems, recorded, exprs = [], set(), []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if ("record" in rule) == ("alert" in rule) or "expr" not in rule:
                problems.append("rule %r: needs expr and exactly one of record, alert" % rule)
                continue
            name = rule.get("record") or rule.get("alert")
            exprs.append((name, str(rule["expr"])))
            if "record" in rule:
                m = re.fullmatch(r"[a-z_]+:(shardserve_[a-z0-9_]+):[a-z0-9_]+", name)
                if not m:
                    problems.append("record %s is not level:shardserve_metric:operations" % name)
                elif not (m.group(1) in FAMILIES or m.group(1) + "_total" in FAMILIES):
                    problems.append("record %s: %s is not a metric of the code" %
                                    (name, m.group(1)))
                recorded.add(name)
            else:
                if "for" not in rule:
                    problems.append("alert %s has no `for`" % name)
                if "severity" not in rule.get("labels", {}):
                    problems.append("alert %s has no severity label" % name)
                if "summary" not in rule.get("annotations", {}):
                    problems.append("alert %s has no summary" % name)
    if not recorded or len(exprs) == len(recorded):
        problems.append("want both recording rules and alerts")
    check("rules: structure", problems)

    problems, label_problems = [], []
    for name, expr in exprs:
        for used in RECORDED_NAME.findall(expr):
            if used not in recorded:
                problems.append("%s uses %s, which no rule records" % (name, used))
        label_problems += promql_label_problems(expr, name)
    for label in re.findall(r"\$labels\.(\w+)", text):
        if label not in ALLOWED_LABELS:
            label_problems.append("annotation uses $labels.%s, which is not set" % label)
    check("rules: every recorded series used is defined", problems)
    check("rules: every label used is set", label_problems)
    check("rules: every shardserve_ name is an exported series", metric_name_problems(text, RULES))


# ---------------------------------------------------------------------------------------------
# READMEs.

def readme_checks():
    problems = []
    flags = set(COORDINATOR_FLAGS) | set(WORKER_FLAGS)
    for path in READMES:
        text = read(path)
        problems += metric_name_problems(text, path)
        for flag in sorted(set(re.findall(r"(?<![\w-])--([a-z][a-z0-9]*_[a-z0-9_]*)", text))):
            if flag not in flags:
                problems.append("%s: --%s is not a coordinator or worker flag" % (path, flag))
    check("readmes: metric names and flags exist", problems)


for section in (chart_checks, dashboard_checks, rules_checks, readme_checks):
    try:
        section()
    except Exception as e:  # a file that does not parse fails its section, not the whole run
        check(section.__name__, ["%s: %s" % (type(e).__name__, e)])

print("%d passed, %d failed" % (passed, len(failures)))
sys.exit(1 if failures else 0)
