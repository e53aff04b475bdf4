# syntax=docker/dockerfile:1
# An asyncmq worker: the package with the Redis backend and its metrics and tracing.
# Extend it with your tasks (COPY them into /app, then pass --app your.tasks), or run any
# other command: `docker run IMAGE queue list --backend redis://...`.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY asyncmq ./asyncmq
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# The backend defaults to a Redis host named `redis`, as in docker-compose.observability.yml:
# asyncmq's own default, memory://, would keep the jobs inside this one container.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ASYNCMQ_BACKEND=redis://redis:6379/0
# Installed from the wheel by its path: by name, pip could take PyPI's unrelated `asyncmq`.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir "$(echo /wheels/asyncmq-*.whl)[redis,observability]"
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 asyncmq \
    && useradd --system --uid 10001 --gid asyncmq --no-create-home --shell /usr/sbin/nologin asyncmq
USER 10001:10001
# --app imports from the working directory, so tasks copied here load as `--app tasks`.
WORKDIR /app
EXPOSE 9100
ENTRYPOINT ["asyncmq"]
# A worker on the `default` queue; the backend is ASYNCMQ_BACKEND (or --backend).
CMD ["worker", "start", "default", "--metrics-host", "0.0.0.0", "--metrics-port", "9100"]
