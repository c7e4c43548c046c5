# jobtrigger controller image.
#   docker build -t jobtrigger:dev .        (or: buildah bud --isolation=chroot -t jobtrigger:dev .)
# Multi-stage: wheels are built in the first stage; the runtime stage has no compiler, runs as non-root,
# and works with a read-only root filesystem (no writes outside /tmp).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jobtrigger ./jobtrigger
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="jobtrigger" \
      org.opencontainers.image.description="Run a Kubernetes Job when something happens in the cluster" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels jobtrigger && rm -rf /wheels
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["jobtrigger"]
CMD ["controller"]
