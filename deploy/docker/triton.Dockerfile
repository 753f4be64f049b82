# Triton Inference Server with this project's model repository.
# 24.10 is Triton 2.51, the release the tests run against locally.
# Bake the exported models in (default), or build with --build-arg BAKE_MODELS=false and mount
# a repository at /models (PVC, or an initContainer that syncs from object storage).
#   deepfake-export --checkpoint ckpt.pth && docker build -f deploy/docker/triton.Dockerfile -t deepfake-triton:0.1.0 .
FROM nvcr.io/nvidia/tritonserver:24.10-py3
ARG BAKE_MODELS=true
COPY --chown=1000:1000 model_repository/ /opt/deepfake/model_repository/
RUN mkdir -p /models \
 && if [ "$BAKE_MODELS" = "true" ]; then cp -r /opt/deepfake/model_repository/. /models/; fi \
 && chown -R 1000:1000 /models
USER 1000
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD ["curl", "-sf", "http://127.0.0.1:8000/v2/health/ready"]
# On a CPU-only host add --model-config-name=cpu (the compose file does).
ENTRYPOINT ["tritonserver", "--model-repository=/models", "--model-control-mode=none", "--strict-readiness=true"]
