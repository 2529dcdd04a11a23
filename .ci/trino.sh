#!/usr/bin/env bash
# A single-node Trino (coordinator scheduling work on itself) with the `memory` and `tpch`
# catalogs, for the Trino integration tests and `tidemark bench trino`.
#
#   source .ci/trino.sh && trino_start   # in a script: exports TRINO_URL and TRINO_PID
#   bash .ci/trino.sh start              # by hand: prints the export lines, leaves it running
#   bash .ci/trino.sh stop               # stops the one `start` left running
#
# The server (core tarball plus the memory and tpch plugins, fetched with Maven) is cached under
# ~/.cache/tidemark-trino so it downloads once per machine; node data lives under /tmp. The
# memory catalog is seeded with the demo commerce tables (schema `memory.demo`, a `tenant`
# column in every table; deterministic rows) plus `notes`, which holds hostile strings.

TRINO_VERSION=476
TRINO_CACHE="${TRINO_CACHE:-$HOME/.cache/tidemark-trino}"
TRINO_JAVA_HOME="${TRINO_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
# The dependency plugin's `copy` goal, pinned so every machine fetches the same way.
TRINO_MVN_COPY="org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy"

# Installs Maven when it is missing (a fresh Debian machine); it runs on the default JDK.
trino_need_mvn() {
    if command -v mvn >/dev/null 2>&1; then
        return 0
    fi
    echo "installing maven" >&2
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >&2
}

# Fetches (once) the server and its two plugins with Maven and unpacks them into the cache.
# Maven uses its own repository configuration and a private local repository under the cache,
# removed afterwards, so the artifacts are not kept twice.
trino_install() {
    local home="$TRINO_CACHE/trino-server-$TRINO_VERSION"
    if [[ -f "$home/.complete" ]]; then
        return 0
    fi
    mkdir -p "$TRINO_CACHE"
    local artifact name type file
    for artifact in server-core:tar.gz memory:zip tpch:zip; do
        name="trino-${artifact%%:*}"
        type="${artifact#*:}"
        file="$TRINO_CACHE/$name-$TRINO_VERSION.$type"
        if [[ ! -s "$file" ]]; then
            trino_need_mvn || return 1
            echo "fetching $(basename "$file") with Maven" >&2
            rm -rf "$TRINO_CACHE/fetch.tmp"
            # Run from the cache, so no pom.xml in the working directory is picked up; Maven's
            # output goes to stderr, since `start` prints export lines on stdout for `eval`.
            (cd "$TRINO_CACHE" && mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$TRINO_CACHE/m2" \
                "$TRINO_MVN_COPY" -Dartifact="io.trino:$name:$TRINO_VERSION:$type" \
                -DoutputDirectory="$TRINO_CACHE/fetch.tmp" >&2) || return 1
            mv "$TRINO_CACHE/fetch.tmp/$(basename "$file")" "$file" || return 1
        fi
    done
    rm -rf "$TRINO_CACHE/m2" "$TRINO_CACHE/fetch.tmp"
    rm -rf "$home" "$home.tmp"
    mkdir -p "$home.tmp"
    tar xzf "$TRINO_CACHE/trino-server-core-$TRINO_VERSION.tar.gz" -C "$home.tmp" --strip-components=1
    local plugin
    for plugin in memory tpch; do
        python3 -m zipfile -e "$TRINO_CACHE/trino-$plugin-$TRINO_VERSION.zip" "$home.tmp/plugin"
        mv "$home.tmp/plugin/trino-$plugin-$TRINO_VERSION" "$home.tmp/plugin/$plugin"
    done
    touch "$home.tmp/.complete"
    mv "$home.tmp" "$home"
}

# Starts the server on a free loopback port, waits until it serves queries, seeds it, and
# exports TRINO_URL and TRINO_PID.
trino_start() {
    trino_install || return 1
    local home="$TRINO_CACHE/trino-server-$TRINO_VERSION"
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    local node_dir
    node_dir=$(mktemp -d /tmp/tidemark-trino.XXXXXX)
    mkdir -p "$node_dir/etc/catalog" "$node_dir/data"
    cat >"$node_dir/etc/node.properties" <<EOF
node.environment=tidemark_test
node.id=tidemark-test-$port
node.data-dir=$node_dir/data
node.bind-ip=127.0.0.1
node.internal-address=127.0.0.1
EOF
    cat >"$node_dir/etc/jvm.config" <<EOF
-server
-Xmx2G
-XX:+UseG1GC
-XX:ActiveProcessorCount=2
-XX:+ExitOnOutOfMemoryError
-Djdk.attach.allowAttachSelf=true
-Dfile.encoding=UTF-8
EOF
    # query.max-length: the safety tests send a 1 MB literal.
    cat >"$node_dir/etc/config.properties" <<EOF
coordinator=true
node-scheduler.include-coordinator=true
http-server.http.port=$port
discovery.uri=http://127.0.0.1:$port
query.max-memory=1GB
query.max-memory-per-node=512MB
query.max-length=20000000
task.concurrency=2
EOF
    echo "connector.name=memory" >"$node_dir/etc/catalog/memory.properties"
    echo "memory.max-data-per-node=512MB" >>"$node_dir/etc/catalog/memory.properties"
    echo "connector.name=tpch" >"$node_dir/etc/catalog/tpch.properties"
    echo "io.trino=WARN" >"$node_dir/etc/log.properties"

    PATH="$TRINO_JAVA_HOME/bin:$PATH" JAVA_HOME="$TRINO_JAVA_HOME" setsid \
        "$home/bin/launcher" run --etc-dir="$node_dir/etc" --data-dir="$node_dir/data" \
        >"$node_dir/server.log" 2>&1 &
    TRINO_PID=$!
    TRINO_URL="http://127.0.0.1:$port"
    export TRINO_URL TRINO_PID
    echo "$TRINO_PID" >"$TRINO_CACHE/last.pid"
    echo "trino $TRINO_VERSION starting at $TRINO_URL (pid $TRINO_PID, log $node_dir/server.log)" >&2
    if ! trino_seed "$TRINO_URL" "$TRINO_PID"; then
        echo "trino did not come up; last lines of $node_dir/server.log:" >&2
        tail -n 40 "$node_dir/server.log" >&2
        return 1
    fi
}

# Waits for GET /v1/info to say `"starting":false`, then creates and fills memory.demo.
trino_seed() {
    python3 - "$1" "$2" <<'PY'
import json, os, random, sys, time, urllib.request
from datetime import date, datetime, timedelta

url, pid = sys.argv[1], int(sys.argv[2])

def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

deadline = time.time() + 240
while True:
    if not alive():
        sys.exit("trino exited while starting")
    try:
        with urllib.request.urlopen(url + "/v1/info", timeout=2) as r:
            if not json.load(r).get("starting", True):
                break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("trino did not finish starting within 240 s")
    time.sleep(0.5)

def run(sql):
    req = urllib.request.Request(url + "/v1/statement", data=sql.encode(), method="POST",
                                 headers={"X-Trino-User": "tidemark-seed"})
    while True:
        with urllib.request.urlopen(req, timeout=120) as r:
            page = json.load(r)
        if "error" in page:
            e = page["error"]
            sys.exit(f"seed statement failed: {e.get('errorName')}: {e.get('message')}\n{sql[:300]}")
        nxt = page.get("nextUri")
        if not nxt:
            return page
        req = urllib.request.Request(nxt, headers={"X-Trino-User": "tidemark-seed"})

# The catalog may need a moment after `starting` flips.
for attempt in range(60):
    try:
        run("SELECT 1")
        break
    except SystemExit:
        if attempt == 59:
            raise
        time.sleep(1)

run("CREATE SCHEMA IF NOT EXISTS memory.demo")
tables = {
    "products": "tenant varchar, product_id bigint, name varchar, category varchar, price decimal(12,2)",
    "customers": "tenant varchar, customer_id bigint, signup_date date, country varchar, segment varchar",
    "orders": "tenant varchar, order_id bigint, customer_id bigint, order_ts timestamp(6), "
              "order_date date, channel varchar, device varchar, status varchar, "
              "revenue decimal(12,2), discount decimal(12,2), items integer, coupon varchar",
    "order_items": "tenant varchar, order_id bigint, line integer, product_id bigint, "
                   "quantity integer, unit_price decimal(12,2), revenue decimal(12,2)",
    "ad_spend": "tenant varchar, day date, channel varchar, campaign varchar, "
                "spend decimal(12,2), clicks bigint, impressions bigint",
    "notes": "tenant varchar, note_id bigint, body varchar",
}
for name, cols in tables.items():
    run(f"DROP TABLE IF EXISTS memory.demo.{name}")
    run(f"CREATE TABLE memory.demo.{name} ({cols})")

def lit(v):
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, datetime):
        return f"TIMESTAMP '{v.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(v, date):
        return f"DATE '{v.isoformat()}'"
    if isinstance(v, tuple):  # (cents,) -> decimal(12,2)
        c = v[0]
        return f"DECIMAL '{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d}'"
    return str(v)

def insert(name, rows):
    for i in range(0, len(rows), 400):
        values = ",\n".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows[i:i + 400])
        run(f"INSERT INTO memory.demo.{name} VALUES {values}")

rng = random.Random(20251125)
start = date(2025, 1, 1)
channels = ["google", "meta", "naver", "organic", "email"]
rows = {name: [] for name in tables}
for tenant, n_orders in (("acme", 2500), ("globex", 1500)):
    prices = {}
    for pid in range(1, 41):
        price = rng.randrange(900, 250000) * 10
        prices[pid] = price
        rows["products"].append((tenant, pid, f"{tenant} product {pid}",
                                 rng.choice(["apparel", "shoes", "bags", "accessories"]), (price,)))
    for cid in range(1, 401):
        rows["customers"].append((tenant, cid, start - timedelta(days=rng.randrange(0, 700)),
                                  rng.choice(["KR", "KR", "KR", "JP", "US"]),
                                  rng.choice(["new", "regular", "regular", "vip"])))
    for oid in range(1, n_orders + 1):
        ts = datetime(2025, 1, 1) + timedelta(seconds=rng.randrange(0, 90 * 86400),
                                              microseconds=rng.randrange(0, 1000000))
        lines = []
        for line in range(1, rng.randrange(2, 5)):
            pid = rng.randrange(1, 41)
            qty = rng.randrange(1, 4)
            lines.append((tenant, oid, line, pid, qty, (prices[pid],), (prices[pid] * qty,)))
        gross = sum(l[6][0] for l in lines)
        discount = rng.choice([0, 0, 0, gross // 10])
        status = rng.choices(["paid", "refunded", "cancelled"], [85, 10, 5])[0]
        rows["order_items"].extend(lines)
        rows["orders"].append((tenant, oid, rng.randrange(1, 401), ts, ts.date(),
                               rng.choice(channels), rng.choice(["mobile", "mobile", "desktop", "tablet"]),
                               status, (gross - discount,), (discount,), len(lines),
                               rng.choice([None, None, None, "WELCOME10", "VIP"])))
    for d in range(90):
        for ch in channels[:3]:
            for campaign in ("brand", "retarget"):
                clicks = rng.randrange(50, 2000)
                rows["ad_spend"].append((tenant, start + timedelta(days=d), ch, f"{ch}-{campaign}",
                                         (clicks * rng.randrange(300, 900),), clicks,
                                         clicks * rng.randrange(20, 60)))
for name in ["products", "customers", "orders", "order_items", "ad_spend"]:
    insert(name, rows[name])

# Hostile strings, built with Trino expressions so this script sends nothing unusual itself.
hostile = [
    "'O''Brien'", "'it''s'", "U&'it\\2019s'", "'a--b'", "'x /* y */ z'", "'back\\slash'",
    "'back\\slash''quote'", "'nul' || chr(0) || 'byte'", "'1'' OR ''1''=''1'",
    "'; DROP TABLE memory.demo.orders; --'", "U&'\\FF07 OR 1=1'", "'line\nbreak'",
    "rpad('big', 1048576, 'x')", "''",
]
values = []
for tenant in ("acme", "globex"):
    for i, expr in enumerate(hostile):
        values.append(f"('{tenant}', {i + 1}, {expr})")
run("INSERT INTO memory.demo.notes VALUES " + ",\n".join(values))
counts = run("SELECT count(*) FROM memory.demo.orders")
print(f"trino seeded: {sum(len(r) for r in rows.values())} rows", file=sys.stderr)
PY
}

# Stops the server started by trino_start (its whole process group).
trino_stop() {
    if [[ -n "${TRINO_PID:-}" ]]; then
        kill -- "-$TRINO_PID" 2>/dev/null || kill "$TRINO_PID" 2>/dev/null || true
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
    start)
        trino_start
        echo "export TRINO_URL=$TRINO_URL"
        echo "export TRINO_PID=$TRINO_PID"
        ;;
    stop)
        TRINO_PID="${TRINO_PID:-$(cat "$TRINO_CACHE/last.pid" 2>/dev/null || true)}"
        trino_stop
        ;;
    install) trino_install ;;
    *)
        echo "usage: bash .ci/trino.sh start|stop|install   (or: source .ci/trino.sh; trino_start)" >&2
        exit 2
        ;;
    esac
fi
