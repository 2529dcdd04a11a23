#!/usr/bin/env bash
# A private PostgreSQL server on loopback, for the PostgreSQL store's tests and
# `tidemark bench ingest --store postgres`.
#
#   source .ci/postgres.sh && postgres_start   # in a script: exports POSTGRES_URL
#   bash .ci/postgres.sh start                  # by hand: prints the export line, leaves it running
#   bash .ci/postgres.sh stop                   # stops the one `start` left running
#   bash .ci/postgres.sh pause | resume         # stops it keeping its data / starts it again
#                                               # (with POSTGRES_DIR and POSTGRES_BIN from start)
#
# The server is Debian's `postgresql` package (installed when missing). `initdb` runs as the
# unprivileged `postgres` user into a fresh directory under /tmp; the server listens on
# 127.0.0.1 on a free port (and on a socket in that directory), trusts connections from
# loopback only, and is stopped (and its directory removed) by `postgres_stop`.

postgres_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

postgres_start() {
    local bin
    if ! bin=$(postgres_bin) || ! command -v openssl >/dev/null; then
        echo "installing PostgreSQL (Debian's postgresql package) and openssl" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql openssl >&2 || return 1
        bin=$(postgres_bin) || { echo "no initdb after installing postgresql" >&2; return 1; }
    fi
    # The package's own cluster is not used (and not needed).
    POSTGRES_DIR=$(mktemp -d /tmp/tidemark-postgres.XXXXXX)
    chown postgres: "$POSTGRES_DIR"
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    runuser -u postgres -- "$bin/initdb" -D "$POSTGRES_DIR/data" -U postgres \
        --auth-host=trust --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$POSTGRES_DIR/initdb.log" 2>&1 ||
        { cat "$POSTGRES_DIR/initdb.log" >&2; return 1; }
    # TLS for the tests that ask for it (sslmode=require): a scratch CA and a certificate for
    # 127.0.0.1 signed by it; clients that do not ask for TLS connect without it.
    local tls="$POSTGRES_DIR/tls"
    mkdir -p "$tls"
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3 \
            -subj "/CN=Tidemark test CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr" &&
            printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
                >"$tls/server.ext" &&
            openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
                -CAcreateserial -days 3 -extfile "$tls/server.ext" -out "$tls/server.crt"
    } >"$POSTGRES_DIR/tls.log" 2>&1 || { cat "$POSTGRES_DIR/tls.log" >&2; return 1; }
    chown -R postgres: "$tls"
    chmod 600 "$tls/server.key"
    # Loopback only; enough connections for the tests' servers and pools. Kept for `resume`.
    echo "-c listen_addresses=127.0.0.1 -p $port -k $POSTGRES_DIR -c max_connections=400 -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" \
        >"$POSTGRES_DIR/options"
    POSTGRES_BIN="$bin" postgres_resume || return 1
    # The CA a client verifies the server with.
    export POSTGRES_CA_FILE="$tls/ca.crt"
    export POSTGRES_DIR POSTGRES_BIN="$bin" POSTGRES_PORT="$port"
    # The tests create a database of their own per test on this server.
    export POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# Stops the server (fast shutdown: sessions ended, as in a restart) and keeps its data.
postgres_pause() {
    runuser -u postgres -- "$POSTGRES_BIN/pg_ctl" -D "$POSTGRES_DIR/data" -m fast -w stop >&2
}

# Starts the server in $POSTGRES_DIR again, as it was started.
postgres_resume() {
    runuser -u postgres -- "$POSTGRES_BIN/pg_ctl" -D "$POSTGRES_DIR/data" -l "$POSTGRES_DIR/server.log" \
        -w -o "$(cat "$POSTGRES_DIR/options")" start >&2 ||
        { cat "$POSTGRES_DIR/server.log" >&2; return 1; }
}

postgres_stop() {
    if [[ -n "${POSTGRES_DIR:-}" && -d "$POSTGRES_DIR/data" ]]; then
        runuser -u postgres -- "${POSTGRES_BIN:-$(postgres_bin)}/pg_ctl" -D "$POSTGRES_DIR/data" \
            -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$POSTGRES_DIR"
    fi
}

case "${1:-}" in
start)
    postgres_start || exit 1
    echo "export POSTGRES_DIR=$POSTGRES_DIR POSTGRES_BIN=$POSTGRES_BIN POSTGRES_PORT=$POSTGRES_PORT"
    echo "export POSTGRES_URL=$POSTGRES_URL POSTGRES_CA_FILE=$POSTGRES_CA_FILE"
    ;;
stop)
    postgres_stop
    ;;
pause)
    postgres_pause
    ;;
resume)
    postgres_resume
    ;;
esac
