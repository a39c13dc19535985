# One image for every recstream role: `recstream worker | web | simulate | train | ...` (docker-compose.yml).
# Builds from a clean clone: the dashboard's Chart.js and Spark's Kafka connector are resolved here,
# at the versions pinned in the repository (web/package-lock.json, services/spark-kafka-pom.xml).

# 1. Dashboard assets: Chart.js from npm into web/static/vendor (gitignored), as `make install` does.
FROM node:22.12.0-bookworm-slim AS web-assets
WORKDIR /src
COPY scripts/build-web-assets.sh scripts/
COPY web/package.json web/package-lock.json web/
RUN bash scripts/build-web-assets.sh

# 2. Spark's Kafka source (spark-sql-kafka-0-10 at pyspark's version): the pom `make install` resolves.
FROM maven:3.9.9-eclipse-temurin-17 AS spark-jars
WORKDIR /src
COPY services/spark-kafka-pom.xml services/
RUN mvn -q -B -f services/spark-kafka-pom.xml dependency:copy-dependencies \
      -DoutputDirectory=/out/spark-jars -DincludeScope=runtime

# 3. recstream and its dependencies in a virtualenv (copied whole into the runtime: no build tools there).
FROM python:3.11.11-slim-bookworm AS python-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY recstream recstream
COPY agents agents
COPY tables tables
COPY training training
COPY web web
COPY --from=web-assets /src/web/static/vendor web/static/vendor
RUN /opt/venv/bin/pip install . \
    && test -f /opt/venv/lib/python3.11/site-packages/recstream/web/static/vendor/chart.umd.min.js \
    && /opt/venv/bin/python -c 'from recstream.serving import kernels; kernels.warm_up()'

# 4. Runtime: Python, Java 17 (Spark's driver in `recstream train`), OpenBLAS; a non-root user.
FROM python:3.11.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless libopenblas0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 recstream \
    && useradd --system --uid 10001 --gid recstream --create-home --home-dir /home/recstream recstream \
    && mkdir -p /data \
    && chown recstream:recstream /data
COPY --from=python-build /opt/venv /opt/venv
# `recstream train` finds the connector at <local_dir>/spark-jars (settings.local_dir).
COPY --from=spark-jars /out/spark-jars /opt/recstream/spark-jars
# The trainer's spark-submit entry point (the same job `recstream train` runs in-process).
COPY training/als_job.py /opt/recstream/als_job.py
ENV PATH=/opt/venv/bin:$PATH \
    RECSTREAM_LOCAL_DIR=/opt/recstream \
    RECSTREAM_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/recstream
VOLUME /data
ENTRYPOINT ["recstream"]
CMD ["--help"]
