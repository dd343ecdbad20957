# Troupe replica image: `docker build -t troupe .`, then see docker-compose.yml.
#
# Two stages: the wheel is built in the first, only installed in the second, so the
# image has no compiler, no build tools and no pip cache. The replica runs as the
# unprivileged user `troupe`; /srv/troupe is its working directory (troupe.yaml and
# playbooks/ are mounted or copied there).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY troupe ./troupe
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# git: self-update (gitpython) needs the git command.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 troupe \
 && useradd --system --uid 10001 --gid troupe --home-dir /srv/troupe --create-home \
    --shell /usr/sbin/nologin troupe
WORKDIR /srv/troupe
COPY --chown=troupe:troupe playbooks ./playbooks
USER troupe
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TROUPE_HEALTH_PORT=8390
EXPOSE 8390
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "troupe.health", "http://127.0.0.1:8390/healthz"]
ENTRYPOINT ["troupe"]
# Docker restarts the container and upgrades replace the image: no supervisor inside.
CMD ["run", "--no-supervisor", "-c", "/srv/troupe/troupe.yaml"]
