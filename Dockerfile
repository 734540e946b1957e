# psychinterp app image. CPU torch by default; build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
# for a CUDA generation worker.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX}" "torch<=2.14.1" "torchvision<=0.29.1"
COPY pyproject.toml README.md ./
COPY server ./server
COPY analysis ./analysis
COPY web ./web
COPY studies ./studies
RUN pip install ".[postgres,ray,s3]"

RUN useradd --create-home psychinterp && mkdir -p /data && chown psychinterp /data
USER psychinterp
ENV PSYCHINTERP_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["psychinterp", "serve", "--host", "0.0.0.0", "--port", "8000"]
