# The chroma-ha gateway alone: the base install (no Chroma server, no local PostgreSQL), run as a non-root user.
#   docker build -t chroma-ha .
#   docker run -p 8000:8000 -e CHROMA_HA_INSTANCES=http://chroma-0:8000,http://chroma-1:8000 \
#       -e CHROMA_HA_STORE=postgresql://user:secret@db/chroma_ha chroma-ha
# Every setting is a CHROMA_HA_* variable (or a flag of `chroma-ha serve`). BASE is any Debian-like image with
# python3 and its venv module (an official slim Python by default).
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# Index settings for pip, given at build time only (this stage is not part of the image).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/chroma-ha
# The dependencies first, from the project's metadata alone: a change of the code reuses this layer.
COPY pyproject.toml /src/
RUN mkdir /src/chroma_ha && touch /src/chroma_ha/__init__.py /src/README.md \
    && /opt/chroma-ha/bin/pip install --quiet /src \
    && /opt/chroma-ha/bin/pip uninstall --quiet --yes chroma-ha \
    && rm -rf /src/build /src/chroma_ha /src/*.egg-info
COPY README.md /src/
COPY chroma_ha /src/chroma_ha
RUN /opt/chroma-ha/bin/pip install --quiet --no-deps /src \
    && /opt/chroma-ha/bin/pip uninstall --quiet --yes setuptools pip \
    && /opt/chroma-ha/bin/chroma-ha --version

FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home chroma-ha
COPY --from=build /opt/chroma-ha /opt/chroma-ha
ENV PATH=/opt/chroma-ha/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CHROMA_HA_HOST=0.0.0.0 \
    CHROMA_HA_PORT=8000 \
    CHROMA_HA_STORE=sqlite:////data/chroma_ha.db
USER chroma-ha
WORKDIR /data
# The SQLite log of a single gateway; gateways on PostgreSQL keep nothing here.
VOLUME ["/data"]
EXPOSE 8000
# /health answers 200 while reads or writes are available; python is the one tool every base has.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CHROMA_HA_PORT', '8000'), timeout=2)"]
# Exec form: the gateway is PID 1 and gets SIGTERM itself. No ENTRYPOINT, so a platform's start command (or
# `docker run IMAGE chroma-ha verify`) replaces the whole command.
CMD ["chroma-ha", "serve"]
