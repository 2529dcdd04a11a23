//! The engine as a timely cluster of processes (here: engines in one test process, joined over
//! loopback TCP exactly as separate processes are): the same event stream, ingested by whichever
//! process, gives the same intents and report runs as one process; each step reports the epoch
//! the whole cluster has made durable.

use operators::rule::RuleSpec;
use operators::{
    CatchUp, ClusterConfig, CompiledRule, DueRun, Engine, EngineConfig, EngineError, Event, Intent,
    IntentKind, RuleChange, Schedule, ScheduleChange, ScheduleSpec, StepInput, StepOutput,
};
use serde_json::json;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// 2026-11-25T00:00:00Z.
const T0: i64 = 1_795_564_800_000;
const TENANTS: [&str; 6] = ["t1", "t2", "t3", "t4", "t5", "t6"];

fn free_addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            socket.local_addr().expect("its address").to_string()
        })
        .collect()
}

/// Starts the `processes` engines of one cluster, `workers` threads each (or one engine of
/// `workers` threads without a cluster when `processes` is 0).
fn start(processes: usize, workers: usize) -> Vec<Engine> {
    if processes == 0 {
        let engine = Engine::start(EngineConfig {
            workers,
            allowed_lateness_ms: MIN,
            cluster: None,
        })
        .expect("engine starts");
        return vec![engine];
    }
    let addresses = free_addresses(processes);
    // A process's start waits until every other process has connected, so they start together.
    std::thread::scope(|scope| {
        let starting: Vec<_> = (0..processes)
            .map(|process| {
                let addresses = addresses.clone();
                scope.spawn(move || {
                    Engine::start(EngineConfig {
                        workers,
                        allowed_lateness_ms: MIN,
                        cluster: Some(ClusterConfig { process, addresses }),
                    })
                    .expect("cluster process starts")
                })
            })
            .collect();
        starting
            .into_iter()
            .map(|h| h.join().expect("start thread"))
            .collect()
    })
}

/// Steps every process of the cluster through one epoch at once, each with its own input.
fn step_all(engines: &mut [Engine], inputs: Vec<StepInput>) -> Vec<StepOutput> {
    std::thread::scope(|scope| {
        let steps: Vec<_> = engines
            .iter_mut()
            .zip(inputs)
            .map(|(engine, input)| scope.spawn(move || engine.step(input).expect("step")))
            .collect();
        steps
            .into_iter()
            .map(|h| h.join().expect("step thread"))
            .collect()
    })
}

fn rule_changes(tenant: &str) -> Vec<RuleChange> {
    let big = json!({"kind": "match", "event_type": "order",
        "filter": {"attr": "amount", "op": ">=", "value": 1_000_000}});
    let hourly = json!({"kind": "threshold", "event_type": "order",
        "aggregate": {"fn": "sum", "attr": "amount"}, "window": {"size": "1h"},
        "group_by": ["channel"], "condition": {"op": ">", "value": 1000}});
    [("big", big), ("rev", hourly)]
        .into_iter()
        .map(|(id, spec)| {
            let spec: RuleSpec = serde_json::from_value(spec).expect("spec parses");
            RuleChange::Upsert(
                CompiledRule::compile(&spec, tenant, id, 1, "UTC")
                    .expect("rule compiles")
                    .rule,
            )
        })
        .collect()
}

fn schedule_change(tenant: &str) -> ScheduleChange {
    let spec = ScheduleSpec {
        cron: "0 * * * *".into(),
        timezone: "Asia/Seoul".into(),
        catch_up: CatchUp::Latest,
    };
    ScheduleChange::Upsert(Schedule::new(tenant, "hourly", 1, &spec, T0).expect("valid"))
}

fn order(n: i64) -> Event {
    let tenant = TENANTS[(n % 6) as usize];
    let channel = ["naver", "kakao", "google"][(n % 3) as usize];
    Event::from_json(
        &json!({"id": format!("e{n}"), "type": "order", "ts": T0 + n * 20_000,
                "attrs": {"amount": (n * 7919 % 1_500_000) as f64, "channel": channel}}),
        tenant,
    )
    .expect("event parses")
}

/// The same workload through a cluster of `processes` (0: no cluster): each tenant's rules and
/// schedule are created through process `tenant index % processes`, event `n` is ingested by
/// process `n % processes`, and the rule of one tenant is removed mid-stream through another
/// process than the one that created it.
fn run(processes: usize, workers: usize) -> (Vec<Intent>, Vec<DueRun>) {
    let mut engines = start(processes, workers);
    let p = engines.len();
    let mut intents = Vec::new();
    let mut due = Vec::new();
    let mut collect = |outputs: Vec<StepOutput>| {
        for out in outputs {
            intents.extend(out.intents);
            due.extend(out.due_runs);
        }
    };
    let mut inputs: Vec<StepInput> = (0..p)
        .map(|_| StepInput {
            clock_ms: Some(T0),
            ..Default::default()
        })
        .collect();
    for (i, tenant) in TENANTS.iter().enumerate() {
        inputs[i % p].rules.extend(rule_changes(tenant));
        inputs[i % p].schedules.push(schedule_change(tenant));
    }
    collect(step_all(&mut engines, inputs));
    for batch in 0..8i64 {
        let clock = T0 + (batch + 1) * 150 * 20_000;
        let mut inputs: Vec<StepInput> = (0..p)
            .map(|_| StepInput {
                clock_ms: Some(clock),
                ..Default::default()
            })
            .collect();
        for n in batch * 150..(batch + 1) * 150 {
            inputs[(n as usize) % p].events.push(order(n));
        }
        if batch == 4 {
            inputs[(1 + 1) % p].rules.push(RuleChange::Remove {
                tenant: TENANTS[1].into(),
                rule_id: "big".into(),
            });
        }
        collect(step_all(&mut engines, inputs));
    }
    let last: Vec<StepInput> = (0..p)
        .map(|_| StepInput {
            clock_ms: Some(T0 + 30 * HOUR),
            ..Default::default()
        })
        .collect();
    collect(step_all(&mut engines, last));
    intents.sort();
    due.sort_by(DueRun::delivery_order);
    (intents, due)
}

#[test]
fn two_processes_of_one_worker_give_what_one_process_of_two_gives() {
    let (one_process, one_due) = run(0, 2);
    assert!(one_process.iter().any(|i| i.kind == IntentKind::Match));
    assert!(one_process.iter().any(|i| i.kind == IntentKind::Firing));
    assert!(one_process.iter().any(|i| i.kind == IntentKind::Resolved));
    assert!(
        !one_process.iter().any(|i| i.tenant == TENANTS[1]
            && i.rule_id == "big"
            && i.event
                .as_ref()
                .is_some_and(|e| e.ts_ms >= T0 + 4 * 150 * 20_000)),
        "a removed rule matches nothing after its removal"
    );
    assert!(one_due.len() >= TENANTS.len(), "{one_due:?}");

    let (two_processes, two_due) = run(2, 1);
    assert_eq!(one_process.len(), two_processes.len());
    assert_eq!(one_process, two_processes);
    assert_eq!(one_due, two_due);

    let (three_processes, three_due) = run(3, 1);
    assert_eq!(one_process, three_processes);
    assert_eq!(one_due, three_due);
}

#[test]
fn a_tenants_intents_come_out_of_the_one_process_that_owns_it() {
    let mut engines = start(2, 1);
    let mut inputs: Vec<StepInput> = (0..2)
        .map(|_| StepInput {
            clock_ms: Some(T0),
            ..Default::default()
        })
        .collect();
    for tenant in TENANTS {
        inputs[0].rules.extend(rule_changes(tenant));
    }
    step_all(&mut engines, inputs);
    // Every big order, ingested by both processes.
    let events: Vec<Event> = (0..600)
        .map(order)
        .filter(|e| {
            e.attrs
                .get("amount")
                .and_then(|a| a.as_f64())
                .is_some_and(|a| a >= 1_000_000.0)
        })
        .collect();
    let inputs = vec![
        StepInput {
            events: events.iter().step_by(2).cloned().collect(),
            clock_ms: Some(T0 + HOUR),
            ..Default::default()
        },
        StepInput {
            events: events.iter().skip(1).step_by(2).cloned().collect(),
            clock_ms: Some(T0 + HOUR),
            ..Default::default()
        },
    ];
    let outputs = step_all(&mut engines, inputs);
    let by_process: Vec<std::collections::BTreeSet<String>> = outputs
        .iter()
        .map(|out| out.intents.iter().map(|i| i.tenant.clone()).collect())
        .collect();
    assert_eq!(
        outputs.iter().map(|o| o.intents.len()).sum::<usize>(),
        events.len(),
        "each big order matches once in the whole cluster"
    );
    assert!(
        by_process[0].is_disjoint(&by_process[1]),
        "a tenant's intents come from one process only: {by_process:?}"
    );
    assert!(!by_process[0].is_empty() && !by_process[1].is_empty());
}

#[test]
fn each_step_reports_the_epoch_every_process_made_durable() {
    let mut engines = start(2, 1);
    let with = |committed: Option<u64>| StepInput {
        clock_ms: Some(T0),
        committed,
        ..Default::default()
    };
    let out = step_all(&mut engines, vec![with(None), with(None)]);
    assert_eq!(out[0].cluster_committed, None);
    let out = step_all(&mut engines, vec![with(Some(0)), with(None)]);
    assert_eq!(
        (out[0].cluster_committed, out[1].cluster_committed),
        (None, None),
        "until every process has made something durable, nothing is durable cluster-wide"
    );
    let out = step_all(&mut engines, vec![with(Some(1)), with(Some(0))]);
    assert_eq!(
        (out[0].cluster_committed, out[1].cluster_committed),
        (Some(0), Some(0))
    );
    let out = step_all(&mut engines, vec![with(Some(2)), with(Some(2))]);
    assert_eq!(
        (out[0].cluster_committed, out[1].cluster_committed),
        (Some(2), Some(2))
    );
}

#[test]
fn each_step_reports_the_longest_horizon_any_process_needs() {
    // A process that owns no windowed rule learns how much history the cluster's rules need.
    let mut engines = start(3, 1);
    let with = |horizon_ms: i64| StepInput {
        horizon_ms,
        ..Default::default()
    };
    let out = step_all(&mut engines, vec![with(0), with(2 * HOUR), with(MIN)]);
    assert_eq!(
        out.iter().map(|o| o.cluster_horizon_ms).collect::<Vec<_>>(),
        vec![2 * HOUR; 3]
    );
    let out = step_all(&mut engines, vec![with(0), with(0), with(0)]);
    assert_eq!(
        out.iter().map(|o| o.cluster_horizon_ms).collect::<Vec<_>>(),
        vec![0; 3]
    );
}

#[test]
fn a_process_index_outside_the_cluster_is_refused() {
    let err = Engine::start(EngineConfig {
        workers: 1,
        allowed_lateness_ms: MIN,
        cluster: Some(ClusterConfig {
            process: 2,
            addresses: free_addresses(2),
        }),
    })
    .err()
    .expect("refused");
    assert!(matches!(err, EngineError::Config(_)), "{err}");
    assert!(err.to_string().contains("process 2"), "{err}");
}
