# kafka-xds control plane image (also runs the compose demo's one-shot certificate and bootstrap jobs).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY xds ./xds
COPY config ./config
# constraints.txt pins every package to the version tested: a rebuild installs the same software.
RUN pip install --constraint constraints.txt ".[certs]" && useradd --system --uid 10001 kafka-xds
USER 10001
EXPOSE 18000 19000
ENTRYPOINT ["kafka-xds"]
CMD ["serve", "--config", "/etc/kafka-xds/config.yaml"]
