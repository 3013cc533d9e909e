"""deploy/kubernetes/, checked without a cluster.

- Every manifest is validated against the Kubernetes OpenAPI schemas that `kubernetes-validate`
  ships (offline), in strict mode (an unknown or misspelt field is an error), for pinned versions;
  negative tests show that the validator really refuses a broken manifest.
- The pieces are wired together the way the app needs: selectors, ports, probe paths, Secret and
  ConfigMap references, one server process, the migration Job, resources, security context.
- The containers' commands run for real, with the ConfigMap's settings and a Secret holding only
  the required keys: the Job's command migrates a fresh PostgreSQL database, then the Deployment's
  command serves, answers its probes as the kubelet asks them, runs as one process, writes nothing
  outside /tmp (the root filesystem is read-only there), and exits 0 on SIGTERM within the grace
  period.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import psycopg
import pytest
import yaml
from alembic.script import ScriptDirectory

from app.config import Settings
from app.routes.health import READINESS_TIMEOUT_SECONDS
from app.supabase.fake import FakeSupabase
from manage import alembic_config
from tests.conftest import PROJECT_ROOT, TEST_SECRET, PostgresServer, make_settings
from tests.processes import copy_project, free_port
from tests.test_readme import layout_tree

DEPLOY_DIR = PROJECT_ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = DEPLOY_DIR / "kustomization.yaml"
SECRET_EXAMPLE = DEPLOY_DIR / "secret.example.yaml"
DEPLOYMENT = (PROJECT_ROOT / "docs/deployment.md").read_text()
VENV_BIN = Path(sys.executable).parent  # the project's virtualenv, as /app/.venv/bin in the image

# The oldest Kubernetes release these manifests are meant for, and a recent one. Both ship with
# kubernetes-validate; strict schemas of the old one refuse fields it does not know yet.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")

REQUIRED_SECRET_KEYS = {"DATABASE_URL", "JWT_SECRET_KEY"}
# Settings that hold credentials: taken from the Secret, never written into the ConfigMap.
SECRET_SETTINGS = REQUIRED_SECRET_KEYS | {
    "JWT_PREVIOUS_SECRET_KEYS",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_PUBLISHABLE_KEY",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_WEBHOOK_SECRET",
    "REDIS_URL",
}
# Settings of the contract that other work adds to app/config.py in this same round; once they
# are Settings fields this set is redundant (but harmless).
CONTRACT_SETTINGS = {
    "LOG_FORMAT",
    "METRICS_ENABLED",
    "REDIS_URL",
    "RATE_LIMIT_EXCHANGE",
    "SUPABASE_PUBLISHABLE_KEY",
    "SUPABASE_WEBHOOK_SECRET",
    "JWT_PREVIOUS_SECRET_KEYS",
}

# PostgreSQL's default max_connections (100) less its superuser_reserved_connections (3).
DATABASE_CONNECTION_BUDGET = 97


def drain_seconds() -> int:
    """Uvicorn's drain of in-flight requests after SIGTERM, as `manage.py run` configures it."""
    match = re.search(r"timeout_graceful_shutdown=(\d+)", (PROJECT_ROOT / "manage.py").read_text())
    assert match is not None, "manage.py run no longer sets timeout_graceful_shutdown"
    return int(match.group(1))


Manifest = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Loading


def documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    """Every manifest in the directory: all YAML files but the kustomization itself."""
    files = sorted(DEPLOY_DIR.glob("*.yaml")) + sorted(DEPLOY_DIR.glob("*.yml"))
    return [path for path in files if path != KUSTOMIZATION]


def kustomization() -> Manifest:
    (doc,) = documents(KUSTOMIZATION)
    return doc


def env_file(path: Path) -> dict[str, str]:
    """A kustomize env file: KEY=VALUE lines, as written; `#` comments and blank lines skipped."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, separator, value = line.partition("=")
            assert separator and key == key.strip(), f"{path.name}: {line!r}"
            pairs[key] = value
    return pairs


def generated_configmaps() -> list[Manifest]:
    """The ConfigMaps of `configMapGenerator` (before kustomize appends the hash to a name)."""
    maps = []
    for generator in kustomization()["configMapGenerator"]:
        data: dict[str, str] = {}
        for name in generator.get("envs", []):
            data |= env_file(DEPLOY_DIR / name)
        options = generator.get("options", {})
        metadata = {"name": generator["name"], "labels": options.get("labels", {})}
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return maps


def applied() -> list[Manifest]:
    """What `kubectl apply -k` sends (before kustomize sets the namespace, the image, the hashed
    ConfigMap name and the Job's release name)."""
    resources = [
        doc for name in kustomization()["resources"] for doc in documents(DEPLOY_DIR / name)
    ]
    return resources + generated_configmaps()


def only(kind: str, resources: list[Manifest] | None = None) -> Manifest:
    found = [doc for doc in (applied() if resources is None else resources) if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_template(kind: str) -> Manifest:
    spec = only(kind)["spec"]
    template: Manifest = (spec["jobTemplate"]["spec"] if kind == "CronJob" else spec)["template"]
    return template


def pod_spec(kind: str) -> Manifest:
    spec: Manifest = pod_template(kind)["spec"]
    return spec


def container(kind: str) -> Manifest:
    (single,) = pod_spec(kind)["containers"]
    return single  # type: ignore[no-any-return]


def argv(kind: str) -> list[str]:
    spec = container(kind)
    return [str(part) for part in spec.get("command", []) + spec.get("args", [])]


def secret_example() -> Manifest:
    (doc,) = documents(SECRET_EXAMPLE)
    return doc


def configmap(name: str) -> Manifest:
    (found,) = [doc for doc in generated_configmaps() if doc["metadata"]["name"] == name]
    return found


def configmap_data() -> dict[str, str]:
    """The settings both workloads read (config.env)."""
    (ref,) = [source["configMapRef"] for source in container("Deployment")["envFrom"]]
    data: dict[str, str] = configmap(ref["name"])["data"]
    return data


def release_job_name() -> str:
    """The migration Job's name once kustomize put the image tag in it."""
    (rewrite,) = kustomization()["images"]
    base: str = only("Job")["metadata"]["name"]
    assert base.endswith("-release"), base
    return base.removesuffix("-release") + "-" + str(rewrite["newTag"])


def secret_refs(kind: str) -> dict[str, Manifest]:
    """The container's env vars taken from a Secret: name → secretKeyRef."""
    return {
        var["name"]: var["valueFrom"]["secretKeyRef"]
        for var in container(kind).get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }


def option(arguments: list[str], name: str) -> str | None:
    return arguments[arguments.index(name) + 1] if name in arguments else None


def validate(resource: Manifest, version: str) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


# --------------------------------------------------------------------------------------------
# Schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: path.name)
def test_manifest_is_valid_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    resources = documents(path)
    assert resources, f"{path.name} holds no resource"
    for resource in resources:
        validate(resource, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_generated_configmaps_are_valid(version: str) -> None:
    for resource in generated_configmaps():
        validate(resource, version)


BROKEN_DEPLOYMENTS = {
    "misspelt field": lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
        livenesProbe=d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    ),
    "field at the wrong level": lambda d: d["spec"].update(containers=[]),
    "wrong type": lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
        containerPort="eight thousand"
    ),
    "missing required field": lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
    "env entry without a name": lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"][
        0
    ].pop("name"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_DEPLOYMENTS))
def test_the_validator_refuses_a_broken_deployment(breakage: str) -> None:
    broken = copy.deepcopy(only("Deployment"))
    BROKEN_DEPLOYMENTS[breakage](broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, KUBERNETES_VERSIONS[0])


def test_strict_mode_is_what_catches_a_misspelt_field() -> None:
    """Without strict mode the schemas accept unknown fields: the misspelling would pass."""
    broken = copy.deepcopy(only("Deployment"))
    BROKEN_DEPLOYMENTS["misspelt field"](broken)
    kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=False)


def test_the_validator_refuses_an_api_version_the_cluster_no_longer_serves() -> None:
    old = copy.deepcopy(only("HorizontalPodAutoscaler"))
    old["apiVersion"] = "autoscaling/v2beta2"  # removed in Kubernetes 1.26
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate(old, KUBERNETES_VERSIONS[0])


# --------------------------------------------------------------------------------------------
# The kustomization


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    expected = {path.name for path in manifest_files()} - {SECRET_EXAMPLE.name}
    assert set(listed) == expected
    # Credentials are created with kubectl, never applied from the repository.
    assert all(doc["kind"] != "Secret" for doc in applied())


def test_kustomization_has_every_kind_the_deployment_needs() -> None:
    kinds = sorted(doc["kind"] for doc in applied())
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "CronJob",
            "Deployment",
            "Ingress",
            "NetworkPolicy",
            "HorizontalPodAutoscaler",
            "Job",
            "Namespace",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )


def test_kustomization_namespace_is_the_namespace_it_creates() -> None:
    assert kustomization()["namespace"] == only("Namespace")["metadata"]["name"]
    assert secret_example()["metadata"]["namespace"] == kustomization()["namespace"]
    # kustomize sets the namespace: a hard-coded one in a file would fight it.
    for doc in applied():
        if doc["kind"] != "Namespace":
            assert "namespace" not in doc["metadata"], doc["kind"]


def test_the_image_rewrite_reaches_the_deployment_and_the_job() -> None:
    """kustomize rewrites only images named exactly as in `images:`; a mismatch ships the
    placeholder name. Server and migration must run the same image."""
    (rewrite,) = kustomization()["images"]
    assert rewrite["newName"] and rewrite["newTag"]
    assert container("Deployment")["image"] == rewrite["name"]
    assert container("Job")["image"] == rewrite["name"]
    assert container("CronJob")["image"] == rewrite["name"]


# --------------------------------------------------------------------------------------------
# Selectors and ports


def test_deployment_selector_matches_its_pod_labels() -> None:
    deployment = only("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_service_pdb_and_hpa_target_the_deployment() -> None:
    deployment = only("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert only("Service")["spec"]["selector"] == selector
    assert only("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    target = only("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    for constraint in pod_spec("Deployment")["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_job_pods_are_not_behind_the_service(kind: str) -> None:
    job_labels = pod_template(kind)["metadata"]["labels"]
    assert not only("Service")["spec"]["selector"].items() <= job_labels.items()
    assert not only("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= (
        job_labels.items()
    )


def test_service_reaches_the_port_the_server_listens_on() -> None:
    (port,) = container("Deployment")["ports"]
    assert int(option(argv("Deployment"), "--port") or 0) == port["containerPort"]
    (service_port,) = only("Service")["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])


def resolve_port(probe_port: int | str) -> int:
    """A probe's port, by number or by the container port's name."""
    ports: dict[str, int] = {
        port["name"]: port["containerPort"] for port in container("Deployment")["ports"]
    }
    if isinstance(probe_port, str):
        assert probe_port in ports, f"no container port named {probe_port}"
        return ports[probe_port]
    return probe_port


@pytest.mark.parametrize(
    ("probe", "path"),
    [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")],
)
def test_probe_asks_the_right_path_on_the_server_port(probe: str, path: str) -> None:
    get = container("Deployment")[probe]["httpGet"]
    assert get["path"] == path
    assert resolve_port(get["port"]) == int(option(argv("Deployment"), "--port") or 0)


def test_readiness_probe_waits_longer_than_readyz_itself() -> None:
    """/readyz answers 503 after READINESS_TIMEOUT_SECONDS; a shorter probe timeout would turn
    every slow database moment into a probe timeout instead of the app's own answer."""
    assert container("Deployment")["readinessProbe"]["timeoutSeconds"] > (READINESS_TIMEOUT_SECONDS)


def test_prometheus_annotations_point_at_the_server() -> None:
    annotations = only("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == resolve_port("http")


# --------------------------------------------------------------------------------------------
# Commands


def test_server_container_runs_one_uvicorn_process_and_no_migration() -> None:
    arguments = argv("Deployment")
    assert arguments[:3] == ["python", "manage.py", "run"]
    assert option(arguments, "--workers") == "1"
    assert "--no-reload" in arguments
    assert option(arguments, "--host") == "0.0.0.0"
    assert "upgrade" not in arguments
    names = {var["name"] for var in container("Deployment").get("env", [])}
    assert "WEB_CONCURRENCY" not in names | set(configmap_data())


def test_migration_job_runs_the_upgrade_once_per_attempt() -> None:
    job = only("Job")
    assert argv("Job") == ["python", "manage.py", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"].get("parallelism", 1) == 1
    assert job["spec"]["backoffLimit"] >= 1


def test_sync_cronjob_runs_the_sync_hourly_one_at_a_time() -> None:
    cronjob = only("CronJob")["spec"]
    assert argv("CronJob") == ["python", "manage.py", "sync-supabase"]
    minute, hour, *rest = cronjob["schedule"].split()
    assert minute.isdigit() and 0 <= int(minute) < 60
    assert (hour, rest) == ("*", ["*", "*", "*"])
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = cronjob["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] < 3600  # a stuck run never holds the next one back
    assert job.get("parallelism", 1) == 1
    assert pod_spec("CronJob")["restartPolicy"] in ("Never", "OnFailure")
    assert cronjob["startingDeadlineSeconds"] < 3600


def test_termination_grace_covers_the_pre_stop_sleep_and_the_drain() -> None:
    spec = pod_spec("Deployment")
    command = container("Deployment")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert pre_stop > 0
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain_seconds()


# --------------------------------------------------------------------------------------------
# Configuration and Secret references


def test_every_env_var_from_a_secret_names_the_secret() -> None:
    name = secret_example()["metadata"]["name"]
    keys = set(secret_example()["stringData"])
    for kind in ("Deployment", "Job", "CronJob"):
        refs = secret_refs(kind)
        assert refs, kind
        for var, ref in refs.items():
            assert ref["name"] == name, f"{kind} {var}"
            assert ref["key"] in keys, f"{kind} {var}: {ref['key']} not in {SECRET_EXAMPLE.name}"
            assert ref["key"] == var


def test_only_the_required_secret_keys_are_mandatory() -> None:
    refs = secret_refs("Deployment")
    assert set(refs) == SECRET_SETTINGS
    mandatory = {var for var, ref in refs.items() if not ref.get("optional", False)}
    assert mandatory == REQUIRED_SECRET_KEYS
    # The Job needs the database and, with APP_ENV=production, the key (or the CLI refuses).
    job = secret_refs("Job")
    assert set(job) == REQUIRED_SECRET_KEYS
    assert not any(ref.get("optional", False) for ref in job.values())
    # The sync needs the key that may list Supabase users too; without it, it says so in one
    # line (a missing mandatory key would leave its pod unable to start, saying nothing).
    sync = secret_refs("CronJob")
    assert set(sync) == REQUIRED_SECRET_KEYS | {"SUPABASE_SERVICE_ROLE_KEY"}
    assert {var for var, ref in sync.items() if not ref.get("optional", False)} == (
        REQUIRED_SECRET_KEYS
    )


def test_both_workloads_read_the_same_settings() -> None:
    """The Deployment and the sync CronJob read the hashed ConfigMap (a change rolls the pods,
    and the next sync run reads it), the Job the same env file under a fixed name (its pod
    template cannot change)."""
    generators = {
        generator["name"]: generator for generator in kustomization()["configMapGenerator"]
    }
    (server,) = [source["configMapRef"]["name"] for source in container("Deployment")["envFrom"]]
    (migration,) = [source["configMapRef"]["name"] for source in container("Job")["envFrom"]]
    (sync,) = [source["configMapRef"]["name"] for source in container("CronJob")["envFrom"]]
    assert sync == server
    assert not generators[server].get("options", {}).get("disableNameSuffixHash", False)
    assert generators[migration]["options"]["disableNameSuffixHash"] is True
    assert generators[server]["envs"] == generators[migration]["envs"]
    assert "generatorOptions" not in kustomization()  # no global switch turns the hash off


def test_configmap_holds_known_settings_and_no_credential() -> None:
    """pydantic-settings ignores unknown variables: a misspelt name would be silently lost."""
    data = configmap_data()
    known = set(Settings.model_fields) | CONTRACT_SETTINGS
    assert set(data) <= known, set(data) - known
    assert not set(data) & SECRET_SETTINGS
    assert all(isinstance(value, str) for value in data.values())
    assert data["APP_ENV"] == "production"


def test_configmap_and_required_secrets_make_valid_production_settings() -> None:
    known = {
        name: value for name, value in configmap_data().items() if name in Settings.model_fields
    }
    settings = make_settings("postgresql://megapolis@db.internal:5432/megapolis", **known)
    assert settings.APP_ENV.value == "production"


def test_database_connections_fit_the_server_at_full_scale() -> None:
    data = configmap_data()
    fields = Settings.model_fields
    pool = int(data.get("DATABASE_POOL_SIZE", fields["DATABASE_POOL_SIZE"].default))
    overflow = int(data.get("DATABASE_MAX_OVERFLOW", fields["DATABASE_MAX_OVERFLOW"].default))
    max_replicas = only("HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    migration = 1  # the Job's one connection (upgrade runs without a pool)
    sync = 1  # the CronJob's one connection (sync-supabase runs without a pool)
    assert max_replicas * (pool + overflow) + migration + sync <= DATABASE_CONNECTION_BUDGET


def test_disruptions_never_leave_no_pod_and_never_block_a_drain() -> None:
    hpa = only("HorizontalPodAutoscaler")["spec"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert "replicas" not in only("Deployment")["spec"], "the HPA owns the replica count"
    pdb = only("PodDisruptionBudget")["spec"]
    if "maxUnavailable" in pdb:
        assert 1 <= pdb["maxUnavailable"] < hpa["minReplicas"]
    else:
        assert 1 <= pdb["minAvailable"] < hpa["minReplicas"]
    rolling = only("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0


# --------------------------------------------------------------------------------------------
# Resources and security


@pytest.mark.parametrize("kind", ["Deployment", "Job", "CronJob"])
def test_requests_and_limits_are_set(kind: str) -> None:
    resources = container(kind)["resources"]
    for resource in ("cpu", "memory"):
        assert resources["requests"][resource], resource
        assert resources["limits"][resource], resource


def image_uid() -> int:
    """The uid the image's user gets by default (the `APP_UID` build argument)."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r'useradd\b.*--uid "?\$\{APP_UID\}', dockerfile, re.S), "useradd --uid"
    match = re.search(r"^ARG APP_UID=(\d+)$", dockerfile, re.M)
    assert match is not None, "no default APP_UID in the Dockerfile"
    return int(match.group(1))


@pytest.mark.parametrize("kind", ["Deployment", "Job", "CronJob"])
def test_pods_run_as_the_image_non_root_user_with_nothing_extra(kind: str) -> None:
    spec = pod_spec(kind)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == image_uid() != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == only("ServiceAccount")["metadata"]["name"]
    box = container(kind)["securityContext"]
    assert box["allowPrivilegeEscalation"] is False
    assert box["capabilities"] == {"drop": ["ALL"]}
    assert box["readOnlyRootFilesystem"] is True
    # ... with /tmp writable, on an emptyDir.
    (mount,) = container(kind)["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = only("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --------------------------------------------------------------------------------------------
# docs/deployment.md


def kubernetes_section() -> str:
    match = re.search(r"^## Kubernetes\n(.*?)(?=^## |\Z)", DEPLOYMENT, re.M | re.S)
    assert match is not None, "no '## Kubernetes' section in docs/deployment.md"
    return match.group(1)


def test_readme_commands_name_what_the_manifests_define() -> None:
    text = kubernetes_section()
    namespace = kustomization()["namespace"]
    assert "kubectl apply -k deploy/kubernetes/" in text
    assert set(re.findall(r"kubectl -n (\S+)", text)) == {namespace}
    # The Job is named after the release: each job/NAME is the Job's name with a tag the same
    # text pushes, and the first deployment's is the committed kustomization's.
    jobs = re.findall(r"\bjob/([\w.-]+)", text)
    assert jobs and jobs[0] == release_job_name()
    prefix = release_job_name().removesuffix(str(kustomization()["images"][0]["newTag"]))
    pushed = set(re.findall(r"docker push \S+:(\S+)", text))
    for job in jobs:
        assert job.startswith(prefix) and job.removeprefix(prefix) in pushed, job
    assert set(re.findall(r"\bdeployment/([\w-]+)", text)) == {
        only("Deployment")["metadata"]["name"]
    }
    secret = secret_example()["metadata"]["name"]
    create = re.search(r"create secret generic (\S+)(.*?)\n\n", text, re.S)
    assert create is not None, "no `kubectl create secret generic` command"
    assert create.group(1) == secret
    for key in REQUIRED_SECRET_KEYS:
        assert f"--from-literal={key}=" in create.group(2), key
    # "Everything but the server first": the selector must single out the Deployment's side.
    component = only("Deployment")["metadata"]["labels"]["app.kubernetes.io/component"]
    assert set(re.findall(r" -l (\S+)", text)) == {f"app.kubernetes.io/component!={component}"}
    assert only("Job")["metadata"]["labels"]["app.kubernetes.io/component"] != component


def test_readme_project_layout_names_the_directory() -> None:
    assert "deploy/kubernetes/" in layout_tree()


# --------------------------------------------------------------------------------------------
# Rolling on a config change, one migration Job per release


def test_the_migration_job_is_named_per_release_and_cleans_itself_up() -> None:
    job = only("Job")
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    (replacement,) = kustomization()["replacements"]
    source = replacement["source"]
    assert (source["kind"], source["name"]) == (
        "Deployment",
        only("Deployment")["metadata"]["name"],
    )
    assert source["fieldPath"] == "spec.template.spec.containers.[name=api].image"
    assert container("Deployment")["name"] == "api"
    assert source["options"] == {"delimiter": ":", "index": 1}  # the tag
    (target,) = replacement["targets"]
    assert target["select"] == {"kind": "Job", "name": job["metadata"]["name"]}
    assert target["fieldPaths"] == ["metadata.name"]
    words = job["metadata"]["name"].split(target["options"]["delimiter"])
    assert words[target["options"]["index"]] == "release"
    # The job-name label Kubernetes puts on its pods is at most 63 characters.
    assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?", release_job_name())


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: the kustomize rendering is not checked")
    return found


def render(directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rendered_config_name(resources: list[Manifest]) -> str:
    (deployment,) = [doc for doc in resources if doc["kind"] == "Deployment"]
    (source,) = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    name: str = source["configMapRef"]["name"]
    return name


def test_kustomize_renders_a_hashed_configmap_and_the_release_job(tmp_path: Path) -> None:
    """What `kubectl apply -k` sends: valid, the Deployment on the hashed ConfigMap, the Job named
    after the tag; and a changed setting gives the Deployment a new pod template (pods roll)
    while the Job's stays the same (it cannot change)."""
    resources = render(DEPLOY_DIR)
    for resource in resources:
        validate(resource, KUBERNETES_VERSIONS[-1])
    names = {doc["metadata"]["name"] for doc in resources if doc["kind"] == "ConfigMap"}
    hashed = rendered_config_name(resources)
    assert hashed in names and re.fullmatch(r"megapolis-api-config-[a-z0-9]{10}", hashed)
    (job,) = [doc for doc in resources if doc["kind"] == "Job"]
    assert job["metadata"]["name"] == release_job_name()
    assert job["metadata"]["namespace"] == kustomization()["namespace"]

    changed = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY_DIR, changed)
    config = changed / "config.env"
    config.write_text(config.read_text().replace("LOG_LEVEL=INFO", "LOG_LEVEL=DEBUG"))
    again = render(changed)
    assert rendered_config_name(again) != hashed
    (job_again,) = [doc for doc in again if doc["kind"] == "Job"]
    assert job_again == job


# --------------------------------------------------------------------------------------------
# Ingress and NetworkPolicy


def test_the_ingress_routes_the_api_to_the_service_and_not_the_internals() -> None:
    from app.main import create_app

    ingress = only("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert [rule["host"]] == ingress["spec"]["tls"][0]["hosts"]
    paths = rule["http"]["paths"]
    service = only("Service")
    (service_port,) = service["spec"]["ports"]
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"] == {"name": service_port["name"]}

    def routed(url: str) -> bool:
        for path in paths:
            prefix = path["path"]
            if path["pathType"] == "Exact" and url == prefix:
                return True
            if path["pathType"] == "Prefix" and (url == prefix or url.startswith(prefix + "/")):
                return True
        return False

    internal = {"/metrics", "/healthz", "/readyz"}
    app = create_app(make_settings("sqlite://"))
    served = {getattr(route, "path", "") for route in app.routes} - {""}
    for path in served:
        assert routed(path) is (path not in internal), path
    assert not any(routed(path) for path in internal)


def test_the_network_policy_lets_in_only_the_ingress_controller() -> None:
    policy = only("NetworkPolicy")["spec"]
    selector = policy["podSelector"]["matchLabels"]
    for kind in ("Deployment", "Job", "CronJob"):
        labels = pod_template(kind)["metadata"]["labels"]
        assert selector.items() <= labels.items(), kind
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"namespaceSelector"}, "only a namespace, no ipBlock or all-pods peer"
    assert "kubernetes.io/metadata.name" in peer["namespaceSelector"]["matchLabels"]
    assert [port["port"] for port in rule["ports"]] == [container("Deployment")["ports"][0]["name"]]


def test_the_network_policy_lets_out_only_dns_database_redis_and_https() -> None:
    egress = only("NetworkPolicy")["spec"]["egress"]
    allowed = set()
    for rule in egress:
        assert rule.get("to"), "a rule without `to` lets out to everywhere"
        assert rule.get("ports"), "a rule without `ports` lets out on every port"
        allowed |= {(port["protocol"], port["port"]) for port in rule["ports"]}
    assert allowed == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 5432),  # PostgreSQL
        ("TCP", 6543),  # Supabase's transaction pooler
        ("TCP", 6379),  # Redis
        ("TCP", 443),  # Supabase Auth
    }
    (dns,) = [
        rule
        for rule in egress
        if ("UDP", 53) in {(p["protocol"], p["port"]) for p in rule["ports"]}
    ]
    (peer,) = dns["to"]
    assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


# --------------------------------------------------------------------------------------------
# The commands, run for real


def pod_environment(kind: str, secret: dict[str, str], home: Path, tmp: Path) -> dict[str, str]:
    """The container's environment as the kubelet builds it: the ConfigMap, then each `env`
    entry; a secretKeyRef whose key the Secret lacks is left out only when it is optional."""
    env = {
        # What the image sets (Dockerfile ENV), and the writable /tmp.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home),
        "TMPDIR": str(tmp),
    }
    env.update(configmap_data())
    for var in container(kind).get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        if ref["key"] in secret:
            env[var["name"]] = secret[ref["key"]]
        else:
            assert ref.get("optional", False), f"the pod would not start: no {ref['key']}"
    return env


def local_argv(arguments: list[str], port: int) -> list[str]:
    """The container's command, with this interpreter, on a free local port."""
    local = [sys.executable if arguments[0] == "python" else arguments[0], *arguments[1:]]
    if "--port" in local:
        local[local.index("--port") + 1] = str(port)
    if "--host" in local:
        local[local.index("--host") + 1] = "127.0.0.1"
    return local


def tree_state(root: Path) -> dict[str, float]:
    return {str(path.relative_to(root)): path.stat().st_mtime for path in root.rglob("*")}


def child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def head_revision() -> str:
    head = ScriptDirectory.from_config(
        alembic_config(make_settings("sqlite://"))
    ).get_current_head()
    assert head is not None
    return head


class Pod:
    """The image's working directory (a copy of the project, nothing else in it: no `.env`) and
    its writable /tmp. `initial` is the directory as the image ships it: with a read-only root
    filesystem, whatever the containers do must leave it so."""

    def __init__(self, root: Path, secret: dict[str, str]) -> None:
        self.app_dir = copy_project(root / "app")
        self.tmp = root / "tmp"
        self.tmp.mkdir()
        self.secret = secret
        self.initial = tree_state(self.app_dir)

    def env(self, kind: str) -> dict[str, str]:
        return pod_environment(kind, self.secret, home=self.app_dir, tmp=self.tmp)

    def assert_nothing_written(self) -> None:
        assert tree_state(self.app_dir) == self.initial, "written outside /tmp"


@pytest.fixture(scope="module")
def fresh_postgres(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database, as a `postgresql://` URL the way providers hand them out."""
    name = postgres_server.create_database("megapolis_k8s")
    try:
        yield postgres_server.url_for(name).replace("postgresql+asyncpg://", "postgresql://", 1)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory, fresh_postgres: str) -> Pod:
    # The Secret as docs/deployment.md creates it: the required keys only.
    secret = {"DATABASE_URL": fresh_postgres, "JWT_SECRET_KEY": TEST_SECRET}
    return Pod(tmp_path_factory.mktemp("pod"), secret)


@pytest.fixture(scope="module")
def migrated(pod: Pod, fresh_postgres: str) -> str:
    """The Job's container command, run once against the fresh database."""
    result = subprocess.run(
        local_argv(argv("Job"), 0),
        cwd=pod.app_dir,
        env=pod.env("Job"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pod.assert_nothing_written()
    with psycopg.connect(fresh_postgres, connect_timeout=5) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.processes
def test_job_command_migrates_a_fresh_database_to_head(migrated: str) -> None:
    assert migrated == head_revision()


def run_sync(pod: Pod, **settings: str) -> subprocess.CompletedProcess[str]:
    """The CronJob's container command, with the pod's environment (`settings` on top)."""
    return subprocess.run(
        local_argv(argv("CronJob"), 0),
        cwd=pod.app_dir,
        env={**pod.env("CronJob"), **settings},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.processes
def test_cronjob_command_says_what_to_set_without_the_key(pod: Pod, migrated: str) -> None:
    """The Secret as the README creates it has no SUPABASE_SERVICE_ROLE_KEY: the pod starts,
    and the run fails in one line naming it."""
    result = run_sync(pod)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "SUPABASE_SERVICE_ROLE_KEY is not set" in line
    pod.assert_nothing_written()


@pytest.mark.processes
def test_cronjob_command_syncs_with_the_key(pod: Pod, migrated: str) -> None:
    with FakeSupabase() as supabase:
        supabase.create_user("ada@example.com")
        result = run_sync(
            pod, SUPABASE_URL=supabase.url, SUPABASE_SERVICE_ROLE_KEY=supabase.secret_key
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "sync-supabase: checked 1, deactivated 0, revoked 0, updated 0"
    ]
    pod.assert_nothing_written()


class Server:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def probe(self, name: str) -> httpx.Response:
        """The probe as the kubelet sends it: to the pod's address, Host `<pod IP>:<port>`."""
        spec = container("Deployment")[name]
        get = spec["httpGet"]
        headers = {"Host": f"10.244.1.7:{resolve_port(get['port'])}", "User-Agent": "kube-probe"}
        headers.update({h["name"]: h["value"] for h in get.get("httpHeaders", [])})
        return httpx.get(
            f"http://127.0.0.1:{self.port}{get['path']}",
            headers=headers,
            timeout=spec.get("timeoutSeconds", 1),
        )


@contextmanager
def serve(pod: Pod) -> Iterator[Server]:
    """The Deployment's container command, with the pod's environment, on a free port; ready
    once the startup probe passes, within the startup probe's own budget."""
    port = free_port()
    process = subprocess.Popen(
        local_argv(argv("Deployment"), port),
        cwd=pod.app_dir,
        env=pod.env("Deployment"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    running = Server(process, port)
    startup = container("Deployment")["startupProbe"]
    deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
    try:
        while True:
            assert process.poll() is None, "the server exited"
            try:
                if running.probe("startupProbe").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the startup probe never passed"
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(pod: Pod, migrated: str) -> Iterator[Server]:
    with serve(pod) as running:
        yield running


@pytest.mark.processes
@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_probes_pass_on_the_running_server(server: Server, probe: str) -> None:
    response = server.probe(probe)
    assert response.status_code == 200, response.text


@pytest.mark.processes
def test_readiness_reports_the_database(server: Server) -> None:
    assert server.probe("readinessProbe").json() == {"status": "ok", "database": "ok"}


@pytest.mark.processes
def test_server_is_one_process(server: Server) -> None:
    assert child_pids(server.process.pid) == []


@pytest.mark.processes
def test_server_writes_nothing_outside_tmp(server: Server, pod: Pod) -> None:
    for _ in range(3):
        assert server.probe("readinessProbe").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{server.port}/auth/me", timeout=5).status_code == 401
    pod.assert_nothing_written()


@pytest.mark.processes
def test_sigterm_ends_the_server_cleanly_within_the_grace_period(server: Server) -> None:
    """SIGTERM (sent after the preStop sleep) must end the server, exit status 0, before the
    kubelet's SIGKILL at the end of the grace period. It stops the module's shared server (a
    second one would cost another start-up), so it stays the last test of this file."""
    pre_stop = int(container("Deployment")["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = pod_spec("Deployment")["terminationGracePeriodSeconds"]
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=grace - pre_stop) == 0
