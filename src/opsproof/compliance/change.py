"""The change a run validated: ticket, commit, image digest and CI build, for run metadata.

A post-deploy run is evidence for the change it validated only if its record says
which change that was. Each value comes from, in order: the pytest option
(`--change`, `--commit`, `--image-digest`), opsproof's own variable
(`OPSPROOF_CHANGE`, `OPSPROOF_COMMIT`, `OPSPROOF_IMAGE_DIGEST`), then the usual
CI variables (GITHUB_SHA, CI_COMMIT_SHA, GIT_COMMIT, BUILD_SOURCEVERSION...).
`sources` names where each value came from, so an auditor can tell a typed ticket
from one the pipeline supplied::

    >>> change_context(environ={"GITHUB_ACTIONS": "true", "GITHUB_SHA": "a" * 40})["sources"]
    {'commit': 'GITHUB_SHA'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from opsproof.compliance import ComplianceError

# Commit variables of the common CI systems, in the order they are tried.
COMMIT_VARIABLES = (
    "GITHUB_SHA",  # GitHub Actions
    "CI_COMMIT_SHA",  # GitLab CI
    "GIT_COMMIT",  # Jenkins (git plugin)
    "BUILD_SOURCEVERSION",  # Azure Pipelines
    "CIRCLE_SHA1",  # CircleCI
    "BITBUCKET_COMMIT",  # Bitbucket Pipelines
    "BUILDKITE_COMMIT",  # Buildkite
    "TRAVIS_COMMIT",  # Travis CI
    "DRONE_COMMIT_SHA",  # Drone
    "CODEBUILD_RESOLVED_SOURCE_VERSION",  # AWS CodeBuild
    "SEMAPHORE_GIT_SHA",  # Semaphore
)
IMAGE_VARIABLES = ("IMAGE_DIGEST",)

_COMMIT = re.compile(r"[0-9a-f]{7,64}")
# `sha256:<64 hex>`, optionally after the image reference: `registry/app@sha256:...`.
_DIGEST = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._/:-]*@)?sha(?:256:[0-9a-f]{64}|512:[0-9a-f]{128})")
_TICKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/#-]{0,99}")


def change_context(
    *,
    ticket: str | None = None,
    commit: str | None = None,
    image_digest: str | None = None,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """`{"ticket", "commit", "image_digest", "ci", "sources"}`; unknown values are None.

    Raises ComplianceError naming the option or variable of a malformed value.
    """
    sources: dict[str, str] = {}
    found_ticket = _pick("ticket", ticket, "--change", ("OPSPROOF_CHANGE",), environ, sources)
    found_commit = _pick("commit", commit, "--commit", ("OPSPROOF_COMMIT", *COMMIT_VARIABLES), environ, sources)
    found_image = _pick(
        "image_digest", image_digest, "--image-digest", ("OPSPROOF_IMAGE_DIGEST", *IMAGE_VARIABLES), environ, sources
    )
    if found_ticket is not None and not _TICKET.fullmatch(found_ticket):
        raise ComplianceError(
            f"{sources['ticket']} {found_ticket!r}: a change ticket is letters, digits and _ . : / # - "
            "(up to 100 characters), e.g. CHG-1234"
        )
    if found_commit is not None:
        if not _COMMIT.fullmatch(found_commit.lower()):
            raise ComplianceError(
                f"{sources['commit']} {found_commit!r}: a commit is 7 to 64 hexadecimal digits (a git SHA)"
            )
        found_commit = found_commit.lower()
    if found_image is not None and not _DIGEST.fullmatch(found_image):
        raise ComplianceError(
            f"{sources['image_digest']} {found_image!r}: an image digest is sha256:<64 hex digits>, "
            "optionally after the image name (registry/app@sha256:...)"
        )
    return {
        "ticket": found_ticket,
        "commit": found_commit,
        "image_digest": found_image,
        "ci": ci_build(environ),
        "sources": sources,
    }


def _pick(
    key: str,
    given: str | None,
    option: str,
    variables: tuple[str, ...],
    environ: Mapping[str, str],
    sources: dict[str, str],
) -> str | None:
    if given is not None:
        if not given.strip():
            raise ComplianceError(f"{option}: empty value")
        sources[key] = option
        return given.strip()
    for name in variables:
        value = environ.get(name, "").strip()
        if value:
            sources[key] = name
            return value
    return None


# (provider, the variable that says so, build URL, branch, build id); the first whose marker is set wins.
_CI_SYSTEMS = (
    ("github-actions", "GITHUB_ACTIONS", None, "GITHUB_REF_NAME", "GITHUB_RUN_ID"),
    ("gitlab-ci", "GITLAB_CI", "CI_JOB_URL", "CI_COMMIT_REF_NAME", "CI_JOB_ID"),
    ("azure-pipelines", "TF_BUILD", None, "BUILD_SOURCEBRANCHNAME", "BUILD_BUILDID"),
    ("circleci", "CIRCLECI", "CIRCLE_BUILD_URL", "CIRCLE_BRANCH", "CIRCLE_BUILD_NUM"),
    ("buildkite", "BUILDKITE", "BUILDKITE_BUILD_URL", "BUILDKITE_BRANCH", "BUILDKITE_BUILD_NUMBER"),
    ("bitbucket-pipelines", "BITBUCKET_BUILD_NUMBER", None, "BITBUCKET_BRANCH", "BITBUCKET_BUILD_NUMBER"),
    ("travis-ci", "TRAVIS", "TRAVIS_BUILD_WEB_URL", "TRAVIS_BRANCH", "TRAVIS_BUILD_ID"),
    ("drone", "DRONE", "DRONE_BUILD_LINK", "DRONE_BRANCH", "DRONE_BUILD_NUMBER"),
    ("aws-codebuild", "CODEBUILD_BUILD_ID", "CODEBUILD_BUILD_URL", None, "CODEBUILD_BUILD_ID"),
    ("jenkins", "JENKINS_URL", "BUILD_URL", "GIT_BRANCH", "BUILD_NUMBER"),
)


def ci_build(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The CI system, build URL, branch and build id of the run, when a CI system is recognised."""
    for provider, marker, url_variable, ref_variable, id_variable in _CI_SYSTEMS:
        if environ.get(marker, "").lower() in ("", "false", "0"):
            continue
        found = {
            "provider": provider,
            "build_url": environ.get(url_variable or "") or _composed_url(provider, environ),
            "ref": environ.get(ref_variable or ""),
            "build_id": environ.get(id_variable),
        }
        return {key: value for key, value in found.items() if value}
    return None


def _composed_url(provider: str, environ: Mapping[str, str]) -> str | None:
    """The build URL of systems that give it in parts."""

    def joined(template: str, *names: str) -> str | None:
        values = [environ.get(name, "") for name in names]
        return template.format(*values) if all(values) else None

    if provider == "github-actions":
        return joined("{}/{}/actions/runs/{}", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if provider == "azure-pipelines":
        return joined("{}{}/_build/results?buildId={}", "SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_BUILDID")
    if provider == "gitlab-ci":
        return environ.get("CI_PIPELINE_URL") or None
    return None


def describe_change(change: dict[str, Any] | None) -> str | None:
    """One line for the terminal: `change CHG-1234, commit 3f2a9c1, image sha256:ab12...`."""
    if not change:
        return None
    parts = []
    if change.get("ticket"):
        parts.append(f"change {change['ticket']}")
    if change.get("commit"):
        parts.append(f"commit {change['commit'][:12]}")
    if change.get("image_digest"):
        parts.append(f"image {change['image_digest']}")
    return ", ".join(parts) or None
