#!/bin/sh
# Fetch the GraphiQL page's browser bundles from npm into app/static/vendor/, so the page at
# GET /graphql loads nothing from a CDN. `make static` runs this; the Docker image runs it in a
# node stage. Without npm, the view falls back to Strawberry's own (CDN) GraphiQL page.
set -eu

GRAPHIQL_VERSION=3.8.3
REACT_VERSION=18.3.1
REACT_DOM_VERSION=18.3.1
# 5.x is the last line that ships a UMD build (umd/graphql-ws.min.js); 6.x is ESM only.
GRAPHQL_WS_VERSION=5.16.0

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR="$ROOT/app/static/vendor"

if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-static: npm not found; GraphiQL will fall back to Strawberry's CDN page." >&2
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tradegraph-static.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# unpack NAME VERSION: `npm pack` the package into $WORK and extract it to $WORK/NAME/.
unpack() {
    (cd "$WORK" && npm pack --silent "$1@$2" >/dev/null) || {
        echo "fetch-static: npm pack $1@$2 failed" >&2
        exit 1
    }
    mkdir "$WORK/$1"
    tar -xzf "$WORK/$1-$2.tgz" -C "$WORK/$1" --strip-components=1
}

# place SOURCE NAME: copy under a temporary name, then rename (a rename is atomic on one
# filesystem), so no reader ever sees half a file.
place() {
    if [ ! -s "$1" ]; then
        echo "fetch-static: $1 is missing from the package" >&2
        exit 1
    fi
    cp "$1" "$VENDOR/.$2.tmp"
    mv -f "$VENDOR/.$2.tmp" "$VENDOR/$2"
}

unpack graphiql "$GRAPHIQL_VERSION"
unpack react "$REACT_VERSION"
unpack react-dom "$REACT_DOM_VERSION"
unpack graphql-ws "$GRAPHQL_WS_VERSION"

mkdir -p "$VENDOR"
place "$WORK/react/umd/react.production.min.js" react.production.min.js
place "$WORK/react-dom/umd/react-dom.production.min.js" react-dom.production.min.js
place "$WORK/graphql-ws/umd/graphql-ws.min.js" graphql-ws.min.js
place "$WORK/graphiql/graphiql.min.css" graphiql.min.css
# Last: the view (and make) take graphiql.min.js as the sign that every asset is present, so a
# run that stopped half-way leaves it absent and is retried.
place "$WORK/graphiql/graphiql.min.js" graphiql.min.js

echo "fetch-static: GraphiQL $GRAPHIQL_VERSION assets are in app/static/vendor/"
