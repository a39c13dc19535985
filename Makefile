# recstream: `make demo` runs the system, `make test` runs the tests. Both install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL := .local
KAFKA_LIBS := $(LOCAL)/kafka/libs
SPARK_JARS := $(LOCAL)/spark-jars
APT_PACKAGES := redis-server libopenblas0 chromium
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install services services-down status test unit lint demo worker bench clean-data

install: .apt-checked $(VENV)/.installed $(KAFKA_LIBS)/.resolved $(SPARK_JARS)/.resolved web/static/vendor/.built

# Debian packages: Redis server, OpenBLAS (native BLAS for Spark's ALS), Chromium (dashboard tests).
# Installed only if missing; re-checked when this list changes.
.apt-checked: Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  $$SUDO service redis-server stop >/dev/null 2>&1 || true; \
	fi
	@touch $@

# Python packages in two steps: what the unit tests need (`make unit` stops here), then the local
# MongoDB-protocol server's package for the services.
$(VENV)/.python: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "installing recstream and its Python dependencies into $(VENV)"
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	@echo "compiling serving's inner loops (numba; cached beside recstream/serving/kernels.py)"
	$(BIN)/python -c 'from recstream.serving import kernels; kernels.warm_up()'
	@touch $@

$(VENV)/.installed: $(VENV)/.python
	$(BIN)/pip install -q -e '.[services,dev,bench]'
	@touch $@

# The genuine Apache Kafka broker, resolved from Maven Central at the version pinned in the pom.
$(KAFKA_LIBS)/.resolved: services/kafka-pom.xml
	@echo "resolving the Apache Kafka broker jars with Maven into $(KAFKA_LIBS)"
	@rm -rf $(KAFKA_LIBS)
	mvn -q -B -f services/kafka-pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS) -DincludeScope=runtime
	@touch $@

# Spark's Kafka source (spark-sql-kafka-0-10) at pyspark's version, for `recstream train`.
$(SPARK_JARS)/.resolved: services/spark-kafka-pom.xml
	@echo "resolving Spark's Kafka connector jars with Maven into $(SPARK_JARS)"
	@rm -rf $(SPARK_JARS)
	mvn -q -B -f services/spark-kafka-pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(SPARK_JARS) -DincludeScope=runtime
	@touch $@

# Chart.js from npm (web/package-lock.json) into web/static/vendor: served locally, no CDN.
web/static/vendor/.built: web/package-lock.json scripts/build-web-assets.sh
	scripts/build-web-assets.sh
	@touch $@

services: install
	$(BIN)/recstream services up

services-down:
	@test -x $(BIN)/recstream && $(BIN)/recstream services down || echo "nothing installed, nothing to stop"

status:
	$(BIN)/recstream services status

test: install services lint
	$(BIN)/pytest tests

# Pure functions only: no services, no JVM, no browser (the compose schema comes with the npm step).
unit: $(VENV)/.python web/static/vendor/.built
	$(BIN)/pytest tests -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

demo: install
	$(BIN)/recstream demo

bench: install services
	$(BIN)/python benchmarks/run.py

clean-data: services-down
	rm -rf $(LOCAL)/data
