# The TradeGraph image: the API (`tradegraph serve`) and the worker (`tradegraph worker`).

# GraphiQL's browser files come from npm at build time, so the page needs no CDN at run time.
FROM node:20-slim AS static
WORKDIR /src
COPY scripts/fetch-static.sh scripts/fetch-static.sh
RUN mkdir -p app/static && sh scripts/fetch-static.sh

# The environment is built from uv.lock alone, with the uv version the Makefile pins; uv and the
# sources stay in this stage.
FROM python:3.11-slim AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1 UV_LINK_MODE=copy
RUN pip install --disable-pip-version-check uv==0.13.9
WORKDIR /srv/tradegraph
# The locked dependencies get their own layer, so a code change does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-install-project --no-editable
COPY README.md ./
COPY app app
COPY schema schema
COPY resolvers resolvers
COPY workers workers
COPY migrations migrations
COPY --from=static /src/app/static/vendor app/static/vendor
RUN uv sync --locked --no-editable

# Same base image and path as the build stage, so the copied environment's interpreter links hold.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/srv/tradegraph/.venv/bin:$PATH
WORKDIR /srv/tradegraph
COPY --from=build /srv/tradegraph/.venv .venv
RUN useradd --system --uid 10001 tradegraph
USER tradegraph
ENV TG_HOST=0.0.0.0 TG_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["tradegraph", "serve", "--host", "0.0.0.0", "--port", "8000"]
