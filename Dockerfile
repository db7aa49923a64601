# One Dockerfile, two images: `--target agent` (gateway: no scikit-learn, scipy or fastapi) and `--target hub`.
FROM python:3.11-slim AS source
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY agent ./agent
COPY hub ./hub
COPY models ./models
COPY sim ./sim
COPY fleetloop ./fleetloop
COPY mosquitto ./mosquitto

FROM source AS agent
RUN pip install --no-cache-dir '.[agent]' && useradd --uid 1000 --create-home fleetloop \
    && mkdir -p /var/lib/fleetloop && chown fleetloop /var/lib/fleetloop
USER fleetloop
ENV FLEETLOOP_AGENT_DATA_DIR=/var/lib/fleetloop
ENTRYPOINT ["fleetloop", "agent"]
CMD ["run"]

FROM source AS hub
RUN pip install --no-cache-dir '.[hub]' && useradd --uid 1000 --create-home fleetloop \
    && mkdir -p /var/lib/fleetloop && chown fleetloop /var/lib/fleetloop
USER fleetloop
ENTRYPOINT ["fleetloop"]
CMD ["models", "--help"]
