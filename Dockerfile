# One image for api, worker and dashboard. TORCH_INDEX picks the torch build:
# CPU by default; for GPU workers build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TAPFL_HOME=/data
WORKDIR /app
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch>=2.4"
COPY pyproject.toml README.md ./
COPY tap_engine tap_engine
COPY backend backend
COPY worker worker
COPY dashboard dashboard
RUN pip install --no-cache-dir . && mkdir -p /data
EXPOSE 8000 8501
