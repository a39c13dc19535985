# One image for every recstream role (worker, web, simulator, trainer). Java is for spark-submit.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless libopenblas0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY recstream recstream
COPY agents agents
COPY tables tables
COPY training training
COPY web web
RUN pip install --no-cache-dir .
ENV RECSTREAM_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["recstream"]
