# The TradeGraph image: the API (`tradegraph serve`) and the worker (`tradegraph worker`).

# GraphiQL's browser files come from npm at build time, so the page needs no CDN at run time.
FROM node:20-slim AS static
WORKDIR /src
COPY scripts/fetch-static.sh scripts/fetch-static.sh
RUN mkdir -p app/static && sh scripts/fetch-static.sh

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/tradegraph
COPY pyproject.toml README.md ./
COPY app app
COPY schema schema
COPY resolvers resolvers
COPY workers workers
COPY migrations migrations
COPY --from=static /src/app/static/vendor app/static/vendor
RUN pip install --no-compile . && useradd --system --uid 10001 tradegraph
USER tradegraph
ENV TG_HOST=0.0.0.0 TG_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["tradegraph", "serve", "--host", "0.0.0.0", "--port", "8000"]
