//! `tidemark serve` as a timely cluster of processes, each with its own store, joined over
//! loopback TCP as they would be across machines.
//!
//! - The same events, posted to whichever process, give the same notifications (ids and
//!   payloads) from 2 processes × 1 worker as from 1 process × 2 workers; a tenant's rules and
//!   destinations, defined through any process, live with the process that owns the tenant.
//! - One process of three is killed (SIGKILL) mid-stream, four times: the others leave the cluster by
//!   themselves (exit status 75), the whole cluster is started again, and every notification
//!   reaches a real receiver, each id once.

#[path = "support/served.rs"]
mod served;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use served::{Received, Server, free_port, serve, start_receiver, wait_healthy};

const TENANTS: [&str; 4] = ["shop-a", "shop-b", "shop-c", "shop-d"];
/// The exit status of a process that left its cluster because the cluster lost a process.
const CLUSTER_LOST: i32 = 75;

fn key(tenant: &str) -> String {
    format!("cluster-test-key-{tenant}-0001")
}

/// The processes of one layout: their configurations and API addresses.
struct Layout {
    _dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    bases: Vec<String>,
    log: PathBuf,
}

/// `processes` processes of `workers` workers each; a layout of one process has no `[cluster]`.
fn layout(processes: usize, workers: usize) -> Layout {
    let dir = tempfile::tempdir().unwrap();
    let api_ports: Vec<u16> = (0..processes).map(|_| free_port()).collect();
    let hosts = dir.path().join("hosts");
    let lines: String = api_ports
        .iter()
        .map(|port| format!("127.0.0.1:{}  http://127.0.0.1:{port}\n", free_port()))
        .collect();
    std::fs::write(&hosts, format!("# exchange  API\n{lines}")).unwrap();
    let tenants: String = TENANTS
        .iter()
        .map(|t| format!("[[tenants]]\nid = \"{t}\"\napi_key = \"{}\"\n", key(t)))
        .collect();
    let configs = (0..processes)
        .map(|process| {
            let config = dir.path().join(format!("process-{process}.toml"));
            let cluster = if processes > 1 {
                format!(
                    "[cluster]\nprocess = {process}\nhosts = \"{}\"\nstall_timeout = \"2s\"\n",
                    hosts.display()
                )
            } else {
                String::new()
            };
            std::fs::write(
                &config,
                format!(
                    r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
[engine]
workers = {workers}
tick = "20ms"
allowed_lateness = "1s"
[sender]
poll = "20ms"
retry_base = "50ms"
[outbound]
allow_private_networks = ["127.0.0.1/32"]   # the receiver listens on loopback
{cluster}{tenants}"#,
                    data = dir.path().join(format!("data-{process}")).display(),
                    port = api_ports[process],
                ),
            )
            .unwrap();
            config
        })
        .collect();
    Layout {
        configs,
        bases: api_ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect(),
        log: dir.path().join("servers.log"),
        _dir: dir,
    }
}

/// Starts every process of the layout and waits until each answers (a cluster's processes
/// answer once all of them have joined).
async fn start_all(layout: &Layout, client: &reqwest::Client) -> Vec<Server> {
    let servers: Vec<Server> = layout
        .configs
        .iter()
        .map(|config| serve(config, &layout.log))
        .collect();
    for base in &layout.bases {
        wait_healthy(client, base, &layout.log).await;
    }
    servers
}

fn client() -> reqwest::Client {
    connectors::http::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The process whose worker owns `tenant` in a cluster of `processes` × `workers`.
fn owner(tenant: &str, processes: usize, workers: usize) -> usize {
    operators::engine::owner(tenant, processes * workers) / workers
}

/// Defines each tenant's webhook destination and rules through process 0; returns which
/// process answered each definition.
async fn define(
    client: &reqwest::Client,
    base: &str,
    hook: &str,
    rules: &[Value],
) -> HashMap<String, String> {
    let mut answered = HashMap::new();
    for tenant in TENANTS {
        let created = client
            .post(format!("{base}/v1/destinations"))
            .bearer_auth(key(tenant))
            .json(&json!({"id": "hook", "kind": "webhook", "config": {"url": hook}}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
        for rule in rules {
            let created = client
                .post(format!("{base}/v1/rules"))
                .bearer_auth(key(tenant))
                .json(rule)
                .send()
                .await
                .unwrap();
            // A server that is no cluster's process does not say.
            let process = created
                .headers()
                .get("x-tidemark-process")
                .map_or("0", |p| p.to_str().unwrap())
                .to_string();
            assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
            answered.insert(tenant.to_string(), process);
        }
    }
    answered
}

/// Waits until the receiver has seen `expected` distinct notifications (and a little longer,
/// for a stray one to show).
async fn wait_for(received: &Mutex<Received>, expected: usize, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.lock().unwrap().count.len() < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} notifications arrived; log:\n{}",
            received.lock().unwrap().count.len(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

/// A layout running, its tenants defined.
struct Running {
    layout: Layout,
    processes: usize,
    client: reqwest::Client,
    received: Arc<Mutex<Received>>,
    _servers: Vec<Server>,
}

/// Starts a layout and defines each tenant's destination and rules through its process 0.
async fn prepare(processes: usize, workers: usize) -> Running {
    let layout = layout(processes, workers);
    let client = client();
    let (hook, received) = start_receiver().await;
    let servers = start_all(&layout, &client).await;
    let answered = define(
        &client,
        &layout.bases[0],
        &hook,
        &[
            json!({"id": "big", "kind": "match", "event_type": "order",
                "filter": {"attr": "amount", "op": ">=", "value": 1_000_000},
                "destinations": ["hook"]}),
            json!({"id": "busy", "name": "Busy shop", "kind": "threshold", "event_type": "order",
                "aggregate": {"fn": "count"}, "window": {"size": "2s"},
                "condition": {"op": ">", "value": 5}, "destinations": ["hook"]}),
        ],
    )
    .await;
    for tenant in TENANTS {
        assert_eq!(
            answered[tenant],
            owner(tenant, processes, workers).to_string(),
            "{tenant}'s definitions are served by the process that owns it"
        );
        // A request that claims to have been relayed already is not served by a process that
        // does not own its tenant.
        for (process, base) in layout.bases.iter().enumerate() {
            let claimed = client
                .get(format!("{base}/v1/rules"))
                .bearer_auth(key(tenant))
                .header("x-tidemark-forwarded", "1")
                .send()
                .await
                .unwrap();
            let expected = if process == owner(tenant, processes, workers) {
                200
            } else {
                421
            };
            assert_eq!(claimed.status(), expected, "{tenant} at process {process}");
        }
    }
    Running {
        layout,
        processes,
        client,
        received,
        _servers: servers,
    }
}

/// Posts each tenant's twelve orders at `ts`, to the processes in turn.
async fn post_orders(running: &Running, ts: i64) {
    for tenant in TENANTS {
        for (process, base) in running.layout.bases.iter().enumerate() {
            let orders: String = (0..12)
                .filter(|i| i % running.processes == process)
                .map(|i| {
                    let amount = if i % 4 == 0 { 2_000_000 } else { 10_000 + i };
                    let event = json!({"id": format!("{tenant}-o{i}"), "type": "order",
                        "ts": ts, "attrs": {"amount": amount}});
                    format!("{event}\n")
                })
                .collect();
            let posted = running
                .client
                .post(format!("{base}/v1/events"))
                .bearer_auth(key(tenant))
                .body(orders)
                .send()
                .await
                .unwrap();
            assert!(
                posted.status().is_success(),
                "{}",
                posted.text().await.unwrap()
            );
        }
    }
}

/// Every notification the layout delivered, by id, once they have all arrived.
async fn delivered(running: &Running) -> BTreeMap<String, Value> {
    // Per tenant: three big orders, and the busy window firing and then resolving.
    wait_for(&running.received, TENANTS.len() * 5, &running.layout.log).await;
    let received = running.received.lock().unwrap();
    assert!(
        received.count.values().all(|&n| n == 1),
        "each notification delivered once: {:?}",
        received.count
    );
    received.payloads.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_one_worker_notify_as_one_process_of_two() {
    assert!(
        TENANTS.iter().any(|t| owner(t, 2, 1) == 0) && TENANTS.iter().any(|t| owner(t, 2, 1) == 1),
        "both processes own a tenant"
    );
    let (alone, cluster) = tokio::join!(prepare(1, 2), prepare(2, 1));
    // The same orders to both, well inside one 2 s window whatever the time is now.
    let now = chrono::Utc::now().timestamp_millis();
    if now % 2_000 > 1_000 {
        tokio::time::sleep(Duration::from_millis((2_050 - now % 2_000) as u64)).await;
    }
    let ts = chrono::Utc::now().timestamp_millis();
    tokio::join!(post_orders(&alone, ts), post_orders(&cluster, ts));
    let (alone, cluster) = tokio::join!(delivered(&alone), delivered(&cluster));
    let kinds: Vec<&str> = alone
        .values()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "match").count(), 12);
    assert_eq!(kinds.iter().filter(|k| **k == "firing").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "resolved").count(), 4);
    assert_eq!(
        alone, cluster,
        "the same notifications (ids and payloads) from 1 x 2 and 2 x 1"
    );
}

/// What the console's sign-in form at `base` answers to `key`: its status and page.
async fn console_sign_in(client: &reqwest::Client, base: &str, key: &str) -> (u16, String) {
    let form = client.get(format!("{base}/login")).send().await.unwrap();
    let cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = form.text().await.unwrap();
    let marker = "name=\"login_token\" value=\"";
    let start = page.find(marker).expect("a sign-in form") + marker.len();
    let token = &page[start..start + page[start..].find('"').unwrap()];
    let answer = client
        .post(format!("{base}/login"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("login_token", token), ("api_key", key), ("next", "/")])
                .finish(),
        )
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_the_tenants_its_process_owns_and_points_to_the_others() {
    let running = prepare(2, 1).await;
    let client = connectors::http::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for tenant in TENANTS {
        let owner = owner(tenant, 2, 1);
        for (process, base) in running.layout.bases.iter().enumerate() {
            let (status, page) = console_sign_in(&client, base, &key(tenant)).await;
            if process == owner {
                assert_eq!(status, 303, "{tenant} signs in on its own process: {page}");
            } else {
                assert_eq!(status, 401, "{page}");
                let told = format!(
                    "tenant {tenant} is served by process {owner} of the cluster: open the \
                     console at http:&#x2f;&#x2f;{}&#x2f;",
                    running.layout.bases[owner].trim_start_matches("http://")
                );
                assert!(
                    page.contains(&told),
                    "{tenant} on process {process}: {page}"
                );
            }
        }
    }
}

/// Batch `batch` of `size` orders of one tenant; every 7th order is big enough to match.
fn batch_body(batch: usize, size: usize, ts: i64) -> String {
    (0..size)
        .map(|i| {
            let n = batch * size + i;
            let amount = if n.is_multiple_of(7) {
                2_000_000
            } else {
                10_000 + n as i64
            };
            let event = json!({"id": format!("e{n:05}"), "type": "order", "ts": ts,
                "attrs": {"amount": amount}});
            format!("{event}\n")
        })
        .collect()
}

/// Waits until `server` has exited by itself; returns its exit status code.
async fn exited(server: &mut Server, log: &Path) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit within 30 s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A process whose API port is in use fails before it joins the cluster: alone, naming the
/// port. The process already waiting for it goes on waiting, and the cluster forms once the
/// failed process is started again with its port free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_port_is_taken_fails_alone_before_joining() {
    let layout = layout(2, 1);
    let client = client();
    let port: u16 = layout.bases[0]
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut waiting = serve(&layout.configs[1], &layout.log);
    let mut failing = serve(&layout.configs[0], &layout.log);
    let status = exited(&mut failing, &layout.log).await;
    let log = || std::fs::read_to_string(&layout.log).unwrap_or_default();
    assert!(
        status.is_some_and(|code| code != 0 && code != CLUSTER_LOST),
        "process 0 fails on its own (status {status:?}); log:\n{}",
        log()
    );
    assert!(
        log().contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "the failure names the port; log:\n{}",
        log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        waiting.0.try_wait().unwrap().is_none(),
        "process 1 goes on waiting for the cluster; log:\n{}",
        log()
    );
    drop(taken);
    let _restarted = serve(&layout.configs[0], &layout.log);
    for base in &layout.bases {
        wait_healthy(&client, base, &layout.log).await;
    }
    assert!(
        waiting.0.try_wait().unwrap().is_none(),
        "the cluster formed with the process that waited; log:\n{}",
        log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_stream_restarts_the_cluster_and_loses_nothing() {
    const BATCHES: usize = 60;
    const SIZE: usize = 20;
    // (round during which a process is killed, which process), each a little later into its
    // round's requests, so kills land in decoding, the commit, the step and the deliveries.
    const KILLS: [(usize, usize); 4] = [(4, 1), (8, 0), (12, 2), (16, 1)];
    let layout = layout(3, 1);
    let client = client();
    let (hook, received) = start_receiver().await;
    let mut servers = start_all(&layout, &client).await;
    let big = json!({"id": "big", "kind": "match", "event_type": "order",
        "filter": {"attr": "amount", "op": ">=", "value": 1_000_000}, "destinations": ["hook"]});
    define(&client, &layout.bases[0], &hook, &[big]).await;
    let ts = chrono::Utc::now().timestamp_millis();
    let tenant_of = |batch: usize| TENANTS[batch % TENANTS.len()];
    let send = |batch: usize| {
        client
            .post(format!("{}/v1/events", layout.bases[batch % 3]))
            .bearer_auth(key(tenant_of(batch)))
            .body(batch_body(batch, SIZE, ts))
            .send()
    };
    let (mut kills, mut resent) = (0, 0);
    // Rounds of three batches, one to each process at once, so every process ingests every
    // tenant's events and many cross the cluster while a process dies.
    for round in 0..BATCHES / 3 {
        let mut unsent: Vec<usize> = (3 * round..3 * round + 3).collect();
        while !unsent.is_empty() {
            let sends = futures::future::join_all(unsent.iter().map(|&batch| send(batch)));
            let Some(&(_, victim)) = KILLS.get(kills).filter(|(at, _)| *at == round) else {
                for (batch, result) in unsent.iter().zip(sends.await) {
                    match result {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => panic!(
                            "batch {batch}: unexpected answer {}: {}",
                            r.status(),
                            r.text().await.unwrap()
                        ),
                        Err(e) => panic!("batch {batch} failed without a kill: {e}"),
                    }
                }
                unsent.clear();
                continue;
            };
            let (results, _) = tokio::join!(sends, async {
                tokio::time::sleep(Duration::from_millis(2 + 10 * kills as u64)).await;
                servers[victim].0.kill().unwrap();
                servers[victim].0.wait().unwrap();
            });
            kills += 1;
            for (process, server) in servers.iter_mut().enumerate() {
                if process != victim {
                    assert_eq!(
                        exited(server, &layout.log).await,
                        Some(CLUSTER_LOST),
                        "process {process} leaves the cluster that lost process {victim}"
                    );
                }
            }
            // The whole cluster starts again (as its supervisor would); unacknowledged batches
            // are sent again (their ids make that safe).
            servers = start_all(&layout, &client).await;
            let acknowledged: Vec<bool> = results
                .into_iter()
                .map(|r| r.is_ok_and(|r| r.status().is_success()))
                .collect();
            resent += acknowledged.iter().filter(|ok| !**ok).count();
            unsent = unsent
                .into_iter()
                .zip(acknowledged)
                .filter_map(|(batch, ok)| (!ok).then_some(batch))
                .collect();
        }
    }
    assert_eq!(kills, KILLS.len());

    let expected: HashSet<(String, String)> = (0..BATCHES * SIZE)
        .filter(|n| n.is_multiple_of(7))
        .map(|n| (tenant_of(n / SIZE).to_string(), format!("e{n:05}")))
        .collect();
    wait_for(&received, expected.len(), &layout.log).await;
    {
        let r = received.lock().unwrap();
        let matched: HashSet<(String, String)> = r
            .payloads
            .values()
            .map(|p| {
                (
                    p["tenant"].as_str().unwrap().to_string(),
                    p["event"]["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            r.count.len(),
            expected.len(),
            "one notification id per matching event"
        );
        assert_eq!(matched, expected, "every matching event notified, no other");
        // A delivery the receiver acknowledged just before its process stopped (killed, or leaving
        // the cluster at once), but which was not yet recorded, is delivered again with the same
        // webhook-id (the receiver's idempotency key); anything else would be a bug.
        let redelivered: Vec<_> = r.count.iter().filter(|(_, n)| **n > 1).collect();
        eprintln!(
            "{} of {} notifications delivered again after {} kills",
            redelivered.len(),
            r.count.len(),
            KILLS.len()
        );
        assert!(
            redelivered.len() <= 8 * KILLS.len(),
            "only deliveries in flight at a kill may repeat: {redelivered:?} (resent batches: {resent})"
        );
    }
    for tenant in TENANTS {
        let pending: Value = client
            .get(format!(
                "{}/v1/notifications?status=pending",
                layout.bases[2]
            ))
            .bearer_auth(key(tenant))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            pending["notifications"].as_array().map(Vec::len),
            Some(0),
            "nothing left undelivered for {tenant}"
        );
    }
}
