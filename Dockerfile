# opsproof's runner image: `pytest -m daily --profile NAME` and `opsproof ...` on PATH.
#
# Multi-stage: the build stage makes a virtual environment of opsproof and its runtime
# dependencies (never the test extra); the runtime stage copies only that environment and
# the checks, as a non-root user. Profiles, checks and the report dir are mount points:
#   /opt/opsproof/profiles  (a ConfigMap)   /opt/opsproof/checks  (optional: your own)
#   /opt/opsproof/reports   (an emptyDir or volume; bundles are shipped with --upload)
#
# The base is pinned by digest (python 3.11.10 slim-bookworm, amd64/arm64 index). The digest
# was taken from a public Dockerfile that pins it; it could not be pulled and checked on the
# machine this was written on (no registry access): see docs/running-at-scale.md.
ARG PYTHON_IMAGE=docker.io/library/python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Every dependency is pinned (==) in pyproject.toml; `.` is opsproof itself.
# The bytecode is compiled here, once, and shipped: the runtime sets PYTHONDONTWRITEBYTECODE
# (a read-only venv), so without it every run compiled every module it imports from source,
# ~1.1 s of CPU per run (1,000 HTTP checks: 2.6 s of CPU instead of 1.5 s, benchmarks/README.md).
# checked-hash: the .pyc is checked against its source's hash, not its mtime, which a copy may change.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-compile . \
    && /opt/venv/bin/python -m compileall -q -f --invalidation-mode checked-hash /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="opsproof" \
      org.opencontainers.image.description="Operational runbooks as evidenced pytest checks"
RUN groupadd --system --gid 10001 opsproof \
    && useradd --system --uid 10001 --gid opsproof --home-dir /opt/opsproof --shell /usr/sbin/nologin opsproof
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/opsproof
COPY --chown=root:root pyproject.toml conftest.py ./
COPY --chown=root:root checks ./checks
COPY --chown=root:root profiles ./profiles
RUN mkdir -p /opt/opsproof/reports && chown opsproof:opsproof /opt/opsproof/reports
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/opt/opsproof
USER 10001:10001
VOLUME ["/opt/opsproof/reports"]
ENTRYPOINT ["pytest"]
CMD ["-m", "daily", "--report-dir", "/opt/opsproof/reports"]
