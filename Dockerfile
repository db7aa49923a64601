# One Dockerfile, two images (docker-compose.yml builds both):
#   --target agent   the gateway agent and the simulator: `.[agent]` only (onnxruntime, paho-mqtt,
#                    cryptography); no scikit-learn, scipy, fastapi or sqlite-utils, as on a Raspberry Pi
#   --target hub     the hub, model training and provisioning: `.[hub,postgres]` (compose stores in PostgreSQL)
# Both run as the non-root user fleetloop (uid 1000) with ENTRYPOINT `fleetloop`, so a command is `GROUP …`.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: one wheel of the project; the runtime images install it with the extra they need -------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY infra ./infra
COPY agent ./agent
COPY hub ./hub
COPY models ./models
COPY sim ./sim
COPY fleetloop ./fleetloop
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime: the user, and the directories volumes are mounted on (a new volume takes their owner) -----------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 1000 fleetloop \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin fleetloop \
    && install -d -o 1000 -g 1000 -m 0750 /var/lib/fleetloop /var/lib/fleetloop/hub /var/lib/fleetloop/agents /models
WORKDIR /var/lib/fleetloop
ENTRYPOINT ["fleetloop"]

FROM runtime AS agent
COPY --from=build /wheels /tmp/wheels
# `fleetloop agent slim`: onnxruntime's C-API library and model tooling and numpy's tests, which a gateway never runs
# (~56 MB of the ~167 MB agent install on x86-64; agent/slim.py). Then the installed packages go to the agent's user:
# Linux pages a library's pages out only for a process that owns the file (agent/memory.py: ~85 -> ~60 MB resident).
# All in one layer, so neither the deleted files nor a second copy of the chowned ones stay in the image.
RUN pip install "$(ls /tmp/wheels/fleetloop-*.whl)[agent]" && rm -rf /tmp/wheels && fleetloop agent slim \
    && chown -R 1000:1000 $(python -c "import numpy, onnxruntime, os; d = os.path.dirname; \
print(*{d(d(m.__file__)) for m in (numpy, onnxruntime)})")
USER 1000:1000
# No HEALTHCHECK: the agent serves nothing to probe; it reports its health over MQTT (status, stats).
CMD ["agent", "run"]

FROM runtime AS hub
COPY --from=build /wheels /tmp/wheels
RUN pip install "$(ls /tmp/wheels/fleetloop-*.whl)[hub,postgres]" && rm -rf /tmp/wheels
USER 1000:1000
EXPOSE 8000
# GET /health on the API port (python: the slim image has no curl). One-shot jobs on this image turn it off.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FLEETLOOP_HUB_API_PORT', '8000'), timeout=4)"]
CMD ["hub", "serve", "--host", "0.0.0.0"]
