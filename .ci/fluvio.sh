#!/usr/bin/env bash
# A private single-node Fluvio cluster (one controller, one SPU) on loopback, for the Fluvio
# source and sink tests and `tidemark bench fluvio`.
#
#   source .ci/fluvio.sh && fluvio_start   # in a script: exports FLUVIO_SC, FLUVIO_BIN, ...
#   bash .ci/fluvio.sh start               # by hand: prints the export lines, leaves it running
#   bash .ci/fluvio.sh stop                # stops the one `start` left running
#
# Fluvio's server (`fluvio-run`) and CLI (`fluvio`) are not published to a package registry; the
# machine provides them as a distribution folder with `bin/` and the `start-local.sh` /
# `stop-local.sh` scripts, found at $FLUVIO_DIST (default: `shared/fluvio` beside the checkout).
# The cluster's data and logs live in a fresh directory under /tmp, on four free ports.

FLUVIO_DIST="${FLUVIO_DIST:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/fluvio}"

fluvio_start() {
    if [[ ! -x "$FLUVIO_DIST/start-local.sh" ]]; then
        echo "no Fluvio distribution at $FLUVIO_DIST (set FLUVIO_DIST to the folder holding bin/fluvio-run and start-local.sh)" >&2
        return 1
    fi
    # The servers link the system OpenSSL 3.
    if ! ldconfig -p 2>/dev/null | grep -q 'libssl\.so\.3'; then
        echo "installing libssl3 for the Fluvio servers" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl3 >&2
    fi
    local exports
    exports=$(FLUVIO_PORTS=auto "$FLUVIO_DIST/start-local.sh") || return 1
    eval "$exports"
    export FLUVIO_DIST
}

fluvio_stop() {
    if [[ -n "${FLUVIO_BASE:-}" ]]; then
        "$FLUVIO_DIST/stop-local.sh" "$FLUVIO_BASE" >/dev/null 2>&1 || true
    fi
}

case "${1:-}" in
start)
    fluvio_start >&2 || exit 1
    grep '^export ' "$FLUVIO_BASE/env"
    echo "export FLUVIO_DIST=$FLUVIO_DIST"
    ;;
stop)
    fluvio_stop
    ;;
esac
