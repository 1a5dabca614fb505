# The image for the optional whatsapp-web role: Rapport's image plus Debian's Chromium (Rapport never
# downloads a browser) and tini as PID 1, which reaps Chromium's child processes.
#
#   docker build -t registry.example.com/rapport:0.1.0 .
#   docker build -f deploy/whatsapp-web.Dockerfile \
#     --build-arg RAPPORT_IMAGE=registry.example.com/rapport:0.1.0 \
#     -t registry.example.com/rapport-whatsapp-web:0.1.0 .
ARG RAPPORT_IMAGE=rapport:latest
FROM ${RAPPORT_IMAGE}
USER root
RUN apt-get update \
  && apt-get install -y --no-install-recommends chromium tini fonts-liberation \
  && rm -rf /var/lib/apt/lists/*
USER node
ENV CHROMIUM_PATH=/usr/bin/chromium
# Young generation as in the main image (Dockerfile): 2 × 8 MB.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=8", "dist/main.js"]
CMD ["whatsapp-web"]
