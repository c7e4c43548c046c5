# jobtrigger controller image.
#   docker build -t jobtrigger:dev .
#   hack/build-image.sh        (offline: a debootstrap base + a host-side wheelhouse, built with buildah)
# Multi-stage: wheels are built in the first stage; the runtime stage has no compiler, runs as non-root,
# and works with a read-only root filesystem (no writes outside /tmp).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_ARGS="--no-index": use only wheelhouse/ (offline builds)
ARG PIP_ARGS=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jobtrigger ./jobtrigger
COPY wheelhouse/ /wheelhouse/
RUN python3 -m venv /opt/jobtrigger \
 && /opt/jobtrigger/bin/pip install --no-cache-dir ${PIP_ARGS} --find-links /wheelhouse . \
 && rm -rf /opt/jobtrigger/lib/python3*/site-packages/pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="jobtrigger" \
      org.opencontainers.image.description="Run a Kubernetes Job when something happens in the cluster" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/jobtrigger/bin:$PATH
COPY --from=build /opt/jobtrigger /opt/jobtrigger
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["jobtrigger"]
CMD ["controller"]
