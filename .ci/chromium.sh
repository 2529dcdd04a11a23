#!/usr/bin/env bash
# Chromium and its WebDriver for the web console's browser test (pipeline/tests/browser.rs).
#
#   source .ci/chromium.sh && chromium_install   # installs Debian's chromium and chromium-driver
#                                                # when missing; exports CHROMIUM and CHROMEDRIVER
#
# The test starts chromedriver itself (on a free loopback port) and Chromium headless through it.

chromium_install() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        echo "installing Chromium and chromedriver (Debian's chromium, chromium-driver)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2 || return 1
    fi
    CHROMIUM=$(command -v chromium)
    CHROMEDRIVER=$(command -v chromedriver)
    export CHROMIUM CHROMEDRIVER
    "$CHROMIUM" --version >&2
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    chromium_install
    echo "export CHROMIUM=$CHROMIUM CHROMEDRIVER=$CHROMEDRIVER"
fi
