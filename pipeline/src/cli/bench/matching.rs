//! `tidemark bench match`: how fast the dataflow matches pre-parsed events against a large,
//! realistic rule set, and what rule changes during ingest cost.
//!
//! Everything is generated from a fixed seed, so two runs with the same arguments feed the engine
//! the same events and rules. Events (orders, refunds, ad spend, sign-ups) are spread over the
//! tenants with a few large shops and a long tail; each tenant sends about one event per second of
//! event time, and the clock follows event time, so windows open, close and retire their events as
//! they would in production, only faster. Rules are mostly `match` rules with comparisons, in-lists
//! and and/or/not, plus a share of `threshold` rules over 1–5 minute windows with a `group_by`.
//!
//! Only [`Engine::step`] calls are timed: generating a batch happens between epochs, while the
//! workers are idle, so `events_per_sec` is what the engine sustains on pre-parsed input. The
//! feed's CPU time is reported by thread (`cpu_ms`: the timely workers, a cluster's network
//! threads, the feeding thread, the input generation), with the workers' time per event set
//! against the generation's (`cpu.work_index`), a figure that moves less with the machine's
//! speed than the rate does (see [`super::cpu`]).
//!
//! With `--processes N` the same workload runs on a timely cluster of N local processes (this
//! binary, started once per process on loopback ports): event `n` is ingested by process
//! `n mod N` and each tenant's rules are loaded through one of them, so most events cross to
//! another process to reach their tenant's owner. Each process generates its share of every
//! batch before the timed feed (a process generating while the others step would stall them),
//! and the result is the whole workload over the slowest process's feed time, with the bytes
//! the events that crossed between processes took on the wire.

use std::time::{Duration, Instant};

use anyhow::Context;
use operators::rule::RuleSpec;
use operators::{
    AttrValue, Attrs, ClusterConfig, CompiledRule, Engine, EngineConfig, Event, IntentKind, Num,
    Rule, RuleChange, SmolStr, StepInput,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchBenchArgs {
    /// Timely worker threads.
    pub workers: usize,
    /// Tenants the rules and events are spread over.
    pub tenants: usize,
    /// Active rules, spread evenly over the tenants.
    pub rules: usize,
    /// Events fed.
    pub events: usize,
    /// Events per epoch.
    pub batch: usize,
    /// Rule updates (an upsert of an existing rule with the next version) per second of feed
    /// time; 0 for none.
    pub rule_updates_per_sec: f64,
    /// Processes of the timely cluster the workload is split over (1: no cluster).
    pub processes: usize,
    /// This process's index, when it is one process of a cluster run (started by the run's
    /// first process with the cluster's addresses); `None` starts such a run.
    pub process: Option<usize>,
    /// The cluster's addresses, in process order, for a process of a cluster run.
    pub addresses: Vec<String>,
}

impl Default for MatchBenchArgs {
    fn default() -> Self {
        MatchBenchArgs {
            workers: 2,
            tenants: 1_000,
            rules: 100_000,
            events: 5_000_000,
            batch: 50_000,
            rule_updates_per_sec: 0.0,
            processes: 1,
            process: None,
            addresses: Vec::new(),
        }
    }
}

/// Seed of every generator: the same arguments give the same input.
const SEED: u64 = 0x7de_3a4c;
/// 2026-11-25T00:00:00Z.
const T0: i64 = 1_795_564_800_000;
/// Each tenant sends about one event per second of event time.
const TENANT_EVENT_INTERVAL_MS: i64 = 1_000;
/// Events arrive up to this much out of order (well within the allowed lateness).
const JITTER_MS: i64 = 5_000;
const ALLOWED_LATENESS_MS: i64 = 60_000;
/// Share of rules that are windowed `threshold` rules; the rest are `match` rules.
const THRESHOLD_SHARE: f64 = 0.15;
const TIME_ZONE: &str = "Asia/Seoul";

const CHANNELS: &[(&str, u32)] = &[
    ("naver", 30),
    ("kakao", 20),
    ("coupang", 15),
    ("google", 10),
    ("meta", 8),
    ("instagram", 7),
    ("direct", 7),
    ("email", 3),
];
const AD_CHANNELS: &[(&str, u32)] = &[("naver", 35), ("kakao", 20), ("google", 25), ("meta", 20)];
const COUNTRIES: &[(&str, u32)] = &[
    ("KR", 70),
    ("JP", 8),
    ("US", 7),
    ("CN", 5),
    ("TW", 4),
    ("SG", 2),
    ("VN", 2),
    ("TH", 2),
];
const DEVICES: &[(&str, u32)] = &[("mobile", 45), ("app", 25), ("desktop", 25), ("tablet", 5)];
const REASONS: &[(&str, u32)] = &[
    ("changed_mind", 40),
    ("damaged", 20),
    ("late", 15),
    ("wrong_item", 15),
    ("other", 10),
];
const EVENT_TYPES: &[(&str, u32)] = &[
    ("order", 50),
    ("ad_spend", 20),
    ("signup", 18),
    ("refund", 12),
];
const SKUS: u32 = 5_000;
const CUSTOMERS: u32 = 200_000;
const CAMPAIGNS: u32 = 40;

fn pick<'a>(rng: &mut StdRng, table: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut at = rng.random_range(0..total);
    for (name, weight) in table {
        if at < *weight {
            return name;
        }
        at -= weight;
    }
    table[table.len() - 1].0
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A log-normal amount around `median`, rounded to `step`.
fn amount(rng: &mut StdRng, median: f64, sigma: f64, step: f64) -> f64 {
    ((median.ln() + sigma * normal(rng)).exp() / step)
        .round()
        .max(1.0)
        * step
}

/// A popularity-skewed index below `n`: low indices are much more common.
fn skewed(rng: &mut StdRng, n: u32) -> u32 {
    let u: f64 = rng.random();
    ((u * u * f64::from(n)) as u32).min(n - 1)
}

fn sku(i: u32) -> String {
    format!("SKU-{i:05}")
}

fn customer(i: u32) -> String {
    format!("C{i:07}")
}

fn tenant_name(i: usize) -> String {
    format!("shop{i:04}")
}

fn text(s: impl Into<SmolStr>) -> AttrValue {
    AttrValue::Str(s.into())
}

fn num(x: f64) -> AttrValue {
    AttrValue::Num(Num(x))
}

/// Generates the event stream: tenants skewed towards a few large shops, event time advancing by
/// one event per tenant per [`TENANT_EVENT_INTERVAL_MS`], with a little disorder.
struct EventSource {
    rng: StdRng,
    tenants: Vec<SmolStr>,
    next: u64,
}

impl EventSource {
    fn new(tenants: usize) -> Self {
        EventSource {
            rng: StdRng::seed_from_u64(SEED ^ 0xe7e7),
            tenants: (0..tenants).map(|i| tenant_name(i).into()).collect(),
            next: 0,
        }
    }

    /// Event time of the `n`th event before jitter.
    fn base_ts(&self, n: u64) -> i64 {
        T0 + (n as i64 * TENANT_EVENT_INTERVAL_MS) / self.tenants.len() as i64
    }

    fn batch(&mut self, len: usize) -> Vec<Event> {
        (0..len).map(|_| self.event()).collect()
    }

    fn event(&mut self) -> Event {
        let n = self.next;
        self.next += 1;
        let base_ts = self.base_ts(n);
        let rng = &mut self.rng;
        let tenant = self.tenants[skewed(rng, self.tenants.len() as u32) as usize].clone();
        let ts_ms = T0.max(base_ts - rng.random_range(0..=JITTER_MS));
        let event_type = pick(rng, EVENT_TYPES);
        let mut attrs = Attrs::new();
        let mut put = |k: &str, v: AttrValue| {
            attrs.insert(k.into(), v);
        };
        match event_type {
            "order" => {
                put("amount", num(amount(rng, 30_000.0, 1.2, 100.0)));
                put("channel", text(pick(rng, CHANNELS)));
                put("country", text(pick(rng, COUNTRIES)));
                put("device", text(pick(rng, DEVICES)));
                put("sku", text(sku(skewed(rng, SKUS))));
                put("customer", text(customer(rng.random_range(0..CUSTOMERS))));
                put("quantity", num(f64::from(1 + skewed(rng, 5))));
                if rng.random_bool(0.2) {
                    put("coupon", text(format!("CP{}", rng.random_range(0..50))));
                }
            }
            "refund" => {
                put("amount", num(amount(rng, 40_000.0, 1.1, 100.0)));
                put("channel", text(pick(rng, CHANNELS)));
                put("country", text(pick(rng, COUNTRIES)));
                put("sku", text(sku(skewed(rng, SKUS))));
                put("customer", text(customer(rng.random_range(0..CUSTOMERS))));
                put("reason", text(pick(rng, REASONS)));
            }
            "ad_spend" => {
                let clicks = f64::from(rng.random_range(0..400u32));
                put("amount", num(amount(rng, 50_000.0, 0.9, 10.0)));
                put("channel", text(pick(rng, AD_CHANNELS)));
                put(
                    "campaign",
                    text(format!("cmp-{:02}", skewed(rng, CAMPAIGNS))),
                );
                put("clicks", num(clicks));
                put(
                    "impressions",
                    num(clicks * f64::from(rng.random_range(20..200u32))),
                );
                put("country", text(pick(rng, COUNTRIES)));
            }
            _ => {
                put("channel", text(pick(rng, CHANNELS)));
                put("country", text(pick(rng, COUNTRIES)));
                put("device", text(pick(rng, DEVICES)));
                put("customer", text(customer(rng.random_range(0..CUSTOMERS))));
            }
        }
        Event {
            tenant,
            event_type: event_type.into(),
            ts_ms,
            id: format!("ev{n:09}").into(),
            attrs,
        }
    }
}

fn some_of(rng: &mut StdRng, table: &[(&str, u32)], count: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(count);
    while out.len() < count.min(table.len()) {
        let name = pick(rng, table).to_string();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A realistic `match` rule for `event_type`: mostly selective conditions, as shops set them.
fn match_spec(rng: &mut StdRng, event_type: &str) -> serde_json::Value {
    let threshold =
        |rng: &mut StdRng, lo: u32, hi: u32, step: u32| f64::from(rng.random_range(lo..hi) * step);
    let filter = match (event_type, rng.random_range(0..6)) {
        ("order", 0) => {
            json!({"attr": "amount", "op": ">=", "value": threshold(rng, 5, 30, 100_000)})
        }
        ("order", 1) => json!({"and": [
            {"attr": "amount", "op": ">=", "value": threshold(rng, 2, 10, 100_000)},
            {"attr": "channel", "op": "in", "value": some_of(rng, CHANNELS, 2)},
        ]}),
        ("order", 2) => json!({"and": [
            {"not": {"attr": "country", "op": "=", "value": "KR"}},
            {"attr": "amount", "op": ">", "value": threshold(rng, 3, 10, 100_000)},
        ]}),
        ("order", 3) => json!({"and": [
            {"attr": "sku", "op": "in", "value": (0..4).map(|_| sku(skewed(rng, SKUS))).collect::<Vec<_>>()},
            {"attr": "quantity", "op": ">=", "value": 3},
        ]}),
        ("order", 4) => json!({"or": [
            {"attr": "customer", "op": "in", "value": (0..5).map(|_| customer(rng.random_range(0..CUSTOMERS))).collect::<Vec<_>>()},
            {"attr": "amount", "op": ">=", "value": threshold(rng, 3, 6, 1_000_000)},
        ]}),
        ("order", _) => json!({"and": [
            {"attr": "coupon", "op": "exists"},
            {"attr": "channel", "op": "=", "value": pick(rng, CHANNELS)},
            {"attr": "amount", "op": ">=", "value": threshold(rng, 3, 8, 100_000)},
        ]}),
        ("refund", 0 | 1) => {
            json!({"attr": "amount", "op": ">=", "value": threshold(rng, 2, 10, 100_000)})
        }
        ("refund", 2 | 3) => json!({"and": [
            {"attr": "reason", "op": "=", "value": "damaged"},
            {"attr": "amount", "op": ">=", "value": threshold(rng, 1, 5, 100_000)},
        ]}),
        ("refund", _) => json!({"and": [
            {"attr": "sku", "op": "in", "value": (0..3).map(|_| sku(skewed(rng, SKUS))).collect::<Vec<_>>()},
            {"attr": "reason", "op": "in", "value": ["damaged", "wrong_item"]},
        ]}),
        ("ad_spend", 0..=2) => json!({"and": [
            {"attr": "channel", "op": "=", "value": pick(rng, AD_CHANNELS)},
            {"attr": "amount", "op": ">", "value": threshold(rng, 4, 12, 100_000)},
        ]}),
        ("ad_spend", _) => json!({"or": [
            {"attr": "amount", "op": ">=", "value": threshold(rng, 6, 16, 100_000)},
            {"and": [
                {"attr": "clicks", "op": "<", "value": 2},
                {"attr": "impressions", "op": ">", "value": 0},
                {"attr": "campaign", "op": "=", "value": format!("cmp-{:02}", skewed(rng, CAMPAIGNS))},
            ]},
        ]}),
        (_, 0..=2) => json!({"and": [
            {"attr": "country", "op": "in", "value": ["SG", "VN", "TH"]},
            {"attr": "channel", "op": "=", "value": pick(rng, CHANNELS)},
        ]}),
        (_, _) => json!({"and": [
            {"attr": "device", "op": "=", "value": "tablet"},
            {"attr": "country", "op": "=", "value": pick(rng, COUNTRIES)},
            {"attr": "channel", "op": "in", "value": some_of(rng, CHANNELS, 2)},
        ]}),
    };
    let mut spec = json!({"kind": "match", "event_type": event_type, "filter": filter});
    if rng.random_bool(0.3) {
        spec["group_by"] = json!(["channel"]);
        spec["throttle"] = json!("10m");
    }
    if rng.random_bool(0.1) {
        spec["quiet_hours"] = json!({"start": "23:00", "end": "07:00"});
    }
    spec
}

/// A realistic windowed `threshold` rule for `event_type`, over a 1–5 minute window.
fn threshold_spec(rng: &mut StdRng, event_type: &str) -> serde_json::Value {
    let minutes = rng.random_range(1..=5u32);
    let window = if minutes == 5 && rng.random_bool(0.3) {
        json!({"size": "5m", "slide": "1m"})
    } else {
        json!({"size": format!("{minutes}m")})
    };
    let m = f64::from(minutes);
    let (aggregate, group_by, condition, filter) = match (event_type, rng.random_range(0..4)) {
        ("order", 0) => (
            json!({"fn": "sum", "attr": "amount"}),
            json!(["channel"]),
            json!({"op": ">", "value": m * f64::from(rng.random_range(5..40u32)) * 100_000.0}),
            None,
        ),
        ("order", 1) => (
            json!({"fn": "count"}),
            json!(["country"]),
            json!({"op": ">=", "value": m * f64::from(rng.random_range(10..60u32))}),
            None,
        ),
        ("order", 2) => (
            json!({"fn": "avg", "attr": "amount"}),
            json!(["device"]),
            json!({"op": ">", "value": f64::from(rng.random_range(10..30u32)) * 10_000.0}),
            Some(json!({"attr": "quantity", "op": ">=", "value": 2})),
        ),
        ("order", _) => (
            json!({"fn": "count_distinct", "attr": "customer"}),
            json!(["sku"]),
            json!({"op": ">=", "value": f64::from(rng.random_range(3..8u32))}),
            None,
        ),
        ("refund", 0 | 1) => (
            json!({"fn": "count"}),
            json!(["sku"]),
            json!({"op": ">=", "value": f64::from(rng.random_range(2..5u32))}),
            None,
        ),
        ("refund", _) => (
            json!({"fn": "sum", "attr": "amount"}),
            json!(["reason"]),
            json!({"op": ">", "value": m * f64::from(rng.random_range(2..20u32)) * 100_000.0}),
            None,
        ),
        ("ad_spend", 0 | 1) => (
            json!({"fn": "sum", "attr": "amount"}),
            json!(["campaign"]),
            json!({"op": ">", "value": m * f64::from(rng.random_range(1..10u32)) * 100_000.0}),
            None,
        ),
        ("ad_spend", _) => (
            json!({"fn": "max", "attr": "amount"}),
            json!(["channel"]),
            json!({"op": ">", "value": f64::from(rng.random_range(2..8u32)) * 100_000.0}),
            Some(json!({"attr": "clicks", "op": "<", "value": 50})),
        ),
        (_, _) => (
            json!({"fn": "count"}),
            json!(["channel"]),
            json!({"op": ">=", "value": m * f64::from(rng.random_range(5..30u32))}),
            None,
        ),
    };
    let mut spec = json!({"kind": "threshold", "event_type": event_type, "aggregate": aggregate,
        "window": window, "group_by": group_by, "condition": condition});
    if let Some(filter) = filter {
        spec["filter"] = filter;
    }
    spec
}

struct RuleDef {
    tenant: String,
    id: String,
    spec: RuleSpec,
    version: u64,
}

impl RuleDef {
    fn compile(&self) -> anyhow::Result<Rule> {
        CompiledRule::compile(&self.spec, &self.tenant, &self.id, self.version, TIME_ZONE)
            .map(|compiled| compiled.rule)
            .with_context(|| format!("rule {} of {}", self.id, self.tenant))
    }
}

/// `rules` rules, spread evenly over the tenants.
fn generate_rules(tenants: usize, rules: usize) -> anyhow::Result<(Vec<RuleDef>, usize)> {
    let mut rng = StdRng::seed_from_u64(SEED ^ 0x5eed);
    let mut thresholds = 0;
    let defs = (0..rules)
        .map(|j| {
            let tenant = tenant_name(j % tenants.max(1));
            let event_type = pick(&mut rng, EVENT_TYPES);
            let spec = if rng.random_bool(THRESHOLD_SHARE) {
                thresholds += 1;
                threshold_spec(&mut rng, event_type)
            } else {
                match_spec(&mut rng, event_type)
            };
            let spec: RuleSpec = serde_json::from_value(spec).context("generated rule spec")?;
            Ok(RuleDef {
                tenant,
                id: format!("r{:06}", j / tenants.max(1)),
                spec,
                version: 1,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((defs, thresholds))
}

/// Peak resident set size of this process, bytes (`VmHWM`), where the platform reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// Runs the benchmark and reports its parameters and results as one JSON object.
pub fn run(args: &MatchBenchArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.tenants > 0, "tenants must be at least 1");
    anyhow::ensure!(args.batch > 0, "batch must be at least 1");
    anyhow::ensure!(
        args.rule_updates_per_sec >= 0.0 && args.rule_updates_per_sec.is_finite(),
        "rule_updates_per_sec must be a finite number >= 0"
    );
    anyhow::ensure!(
        (1..=64).contains(&args.processes),
        "processes must be 1 to 64"
    );
    if args.processes > 1 && args.process.is_none() {
        return run_cluster(args);
    }
    let (me, of) = (args.process.unwrap_or(0), args.processes);
    let cluster = args.process.map(|process| ClusterConfig {
        process,
        addresses: args.addresses.clone(),
    });
    let (mut defs, thresholds) = generate_rules(args.tenants, args.rules)?;
    let mut engine = Engine::start(EngineConfig {
        workers: args.workers,
        allowed_lateness_ms: ALLOWED_LATENESS_MS,
        cluster,
    })?;

    let load: Vec<RuleChange> = defs
        .iter()
        .enumerate()
        .filter(|(j, _)| j % of == me)
        .map(|(_, d)| d.compile().map(RuleChange::Upsert))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    engine.step(StepInput {
        rules: load,
        clock_ms: Some(T0),
        ..Default::default()
    })?;
    let rule_load = started.elapsed();

    let mut source = EventSource::new(args.tenants);
    let mut update_rng = StdRng::seed_from_u64(SEED ^ 0x0bda);
    let mut latencies = Vec::new();
    let mut feed = Duration::ZERO;
    let (mut matches, mut firing, mut resolved, mut late) = (0u64, 0u64, 0u64, 0u64);
    let mut updates = 0u64;
    let mut fed = 0usize;
    let mut clock = T0;
    // A process of a cluster generates its shares of all batches first (see the module doc).
    let mut shares = std::collections::VecDeque::new();
    // Events this process sends to the other processes' workers.
    let mut crossing = 0u64;
    // CPU time this thread spent generating input (the yardstick; see [`cpu_figures`]).
    let mut generating_ns = 0u64;
    if args.process.is_some() {
        let peers = args.workers * of;
        while fed < args.events {
            let len = args.batch.min(args.events - fed);
            let share: Vec<Event> = generate(&mut source, len, &mut generating_ns)
                .into_iter()
                .enumerate()
                .filter(|(k, _)| (fed + k) % of == me)
                .map(|(_, event)| event)
                .collect();
            for event in &share {
                if operators::engine::owner(&event.tenant, peers) / args.workers != me {
                    crossing += 1;
                }
            }
            fed += len;
            clock = clock.max(source.base_ts(source.next));
            shares.push_back((share, clock));
        }
        fed = 0;
    }
    let mut own = 0usize;
    clock = T0;
    let feeder = super::cpu::this_thread_id();
    let threads_before = super::cpu::ThreadTimes::now();
    let (feeder_before, generating_before) = (super::cpu::this_thread_ns(), generating_ns);
    while fed < args.events {
        let len = args.batch.min(args.events - fed);
        let events = match shares.pop_front() {
            Some((share, at)) => {
                clock = at;
                share
            }
            None => {
                let batch = generate(&mut source, len, &mut generating_ns);
                clock = clock.max(source.base_ts(source.next));
                batch
            }
        };
        own += events.len();
        fed += len;
        let mut rules = Vec::new();
        if args.rule_updates_per_sec > 0.0 && !defs.is_empty() && me == 0 {
            let due = (args.rule_updates_per_sec * feed.as_secs_f64()) as u64;
            while updates < due {
                let pick = update_rng.random_range(0..defs.len());
                let def = &mut defs[pick];
                def.version += 1;
                rules.push(RuleChange::Upsert(def.compile()?));
                updates += 1;
            }
        }
        let started = Instant::now();
        let out = engine.step(StepInput {
            events,
            rules,
            clock_ms: Some(clock),
            ..Default::default()
        })?;
        let took = started.elapsed();
        feed += took;
        latencies.push(took);
        late += out.late.len() as u64;
        for intent in &out.intents {
            match intent.kind {
                IntentKind::Match => matches += 1,
                IntentKind::Firing => firing += 1,
                IntentKind::Resolved => resolved += 1,
            }
        }
    }
    // The workers wait for the next epoch now, so their times are up to date.
    let threads = super::cpu::ThreadTimes::now();
    let feeding_ns = super::cpu::this_thread_ns()
        .saturating_sub(feeder_before)
        .saturating_sub(generating_ns - generating_before);
    let workers_ns = threads.since(&threads_before, super::cpu::Role::Worker, feeder);
    let network_ns = threads.since(&threads_before, super::cpu::Role::Network, feeder);
    let other_ns = threads.since(&threads_before, super::cpu::Role::Other, feeder);
    let stats = engine.stats();
    drop(engine);

    let epochs = latencies.len();
    latencies.sort();
    let secs = feed.as_secs_f64();
    let per_sec = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    Ok(json!({
        "benchmark": "match",
        "params": {
            "workers": args.workers,
            "processes": of,
            "process": args.process,
            "tenants": args.tenants,
            "rules": args.rules,
            "events": args.events,
            "batch": args.batch,
            "rule_updates_per_sec": args.rule_updates_per_sec,
            "seed": SEED,
            "rules_match": args.rules - thresholds,
            "rules_threshold": thresholds,
            "allowed_lateness_ms": ALLOWED_LATENESS_MS,
            "event_time_span_ms": clock - T0,
        },
        "results": {
            "events_per_sec": per_sec(own as f64),
            "events_fed_here": own,
            "events_sent_to_other_processes": crossing,
            // As the exchange encoded them (timely's framing aside).
            "bytes_sent_to_other_processes": operators::exchange::encoded_bytes(),
            "feed_seconds": secs,
            "epochs": epochs,
            "epoch_latency_ms": {
                "p50": percentile_ms(&latencies, 50.0),
                "p99": percentile_ms(&latencies, 99.0),
                "max": percentile_ms(&latencies, 100.0),
            },
            "intents": matches + firing + resolved,
            "intents_match": matches,
            "intents_firing": firing,
            "intents_resolved": resolved,
            "late_events": late,
            "rule_updates": updates,
            "rule_updates_per_sec_achieved": per_sec(updates as f64),
            "rule_load_seconds": rule_load.as_secs_f64(),
            "retained_events_at_end": stats.retained,
            "windows_closed": stats.state.windows_closed,
            "peak_rss_bytes": peak_rss_bytes(),
            "cpu_ms": {
                "workers": workers_ns as f64 / 1e6,
                "network": network_ns as f64 / 1e6,
                "feeding": feeding_ns as f64 / 1e6,
                "generating": generating_ns as f64 / 1e6,
                "other": other_ns as f64 / 1e6,
            },
            // Every process generates every batch and keeps its share.
            "events_generated": args.events,
            "cpu": cpu_figures(
                workers_ns as f64,
                generating_ns as f64,
                args.events as f64,
                args.events as f64,
            ),
        },
    }))
}

/// The next `len` events of `source`, the CPU time generating them took added to `spent` (ns).
fn generate(source: &mut EventSource, len: usize, spent: &mut u64) -> Vec<Event> {
    let started = super::cpu::this_thread_ns();
    let batch = source.batch(len);
    *spent += super::cpu::this_thread_ns().saturating_sub(started);
    batch
}

/// The timely workers' CPU time per event fed, the input generation's per event generated, and
/// their ratio: how much work matching an event was against a yardstick measured in the same
/// run. The machine's speed moves both alike, so the ratio compares builds run at different
/// moments better than either rate does (see [`super::cpu`]). Compare it within one layout: a
/// process of a cluster generates all its input before the feed, into memory never used
/// before, which costs more per event than one process re-using each epoch's memory; layouts
/// are compared by the workers' time per event, run in the same minutes.
fn cpu_figures(
    workers_ns: f64,
    generating_ns: f64,
    events: f64,
    generated: f64,
) -> serde_json::Value {
    let per = |ns: f64, n: f64| if n > 0.0 { ns / n } else { 0.0 };
    let (worker, yardstick) = (per(workers_ns, events), per(generating_ns, generated));
    json!({
        "worker_ns_per_event": worker,
        "generating_ns_per_event": yardstick,
        "work_index": if yardstick > 0.0 { worker / yardstick } else { 0.0 },
    })
}

/// Starts the run's `processes` as child processes of this binary, one cluster on loopback, and
/// sums their reports: the whole workload over the slowest process's feed time.
fn run_cluster(args: &MatchBenchArgs) -> anyhow::Result<serde_json::Value> {
    let addresses: Vec<String> = (0..args.processes)
        .map(|_| -> anyhow::Result<String> {
            let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(socket.local_addr()?.to_string())
        })
        .collect::<anyhow::Result<_>>()?;
    let exe = std::env::current_exe().context("finding this binary to start the processes")?;
    let children = (0..args.processes)
        .map(|process| {
            std::process::Command::new(&exe)
                .args(["bench", "match"])
                .args(["--workers", &args.workers.to_string()])
                .args(["--tenants", &args.tenants.to_string()])
                .args(["--rules", &args.rules.to_string()])
                .args(["--events", &args.events.to_string()])
                .args(["--batch", &args.batch.to_string()])
                .args([
                    "--rule-updates-per-sec",
                    &args.rule_updates_per_sec.to_string(),
                ])
                .args(["--processes", &args.processes.to_string()])
                .args(["--process", &process.to_string()])
                .args(["--addresses", &addresses.join(",")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .with_context(|| format!("starting process {process}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut reports = Vec::new();
    for (process, child) in children.into_iter().enumerate() {
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for process {process}"))?;
        anyhow::ensure!(
            out.status.success(),
            "process {process} of the cluster failed ({})",
            out.status
        );
        // Timely writes its connection progress to stdout before the report.
        let start = out.stdout.iter().position(|b| *b == b'{').unwrap_or(0);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout[start..])
            .with_context(|| format!("reading process {process}'s report"))?;
        reports.push(report);
    }
    let result = |r: &serde_json::Value, key: &str| r["results"][key].as_f64().unwrap_or(0.0);
    let slowest = reports
        .iter()
        .map(|r| result(r, "feed_seconds"))
        .fold(0.0, f64::max);
    let sum = |key: &str| reports.iter().map(|r| result(r, key)).sum::<f64>();
    let crossed = sum("events_sent_to_other_processes");
    let cpu_ms = |role: &str| {
        reports
            .iter()
            .map(|r| r["results"]["cpu_ms"][role].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    Ok(json!({
        "benchmark": "match",
        "params": {
            "workers": args.workers,
            "processes": args.processes,
            "tenants": args.tenants,
            "rules": args.rules,
            "events": args.events,
            "batch": args.batch,
            "rule_updates_per_sec": args.rule_updates_per_sec,
            "seed": SEED,
        },
        "results": {
            "events_per_sec": if slowest > 0.0 { args.events as f64 / slowest } else { 0.0 },
            "feed_seconds": slowest,
            "intents": sum("intents"),
            "events_sent_to_other_processes": crossed,
            "exchange_bytes_per_crossing_event": if crossed > 0.0 {
                sum("bytes_sent_to_other_processes") / crossed
            } else {
                0.0
            },
            "cpu_ms": {
                "workers": cpu_ms("workers"),
                "network": cpu_ms("network"),
                "feeding": cpu_ms("feeding"),
                "generating": cpu_ms("generating"),
                "other": cpu_ms("other"),
            },
            "cpu": cpu_figures(
                cpu_ms("workers") * 1e6,
                cpu_ms("generating") * 1e6,
                args.events as f64,
                sum("events_generated"),
            ),
        },
        "processes": reports,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_produces_intents() {
        let report = run(&MatchBenchArgs {
            workers: 1,
            tenants: 4,
            rules: 200,
            events: 4_000,
            batch: 500,
            rule_updates_per_sec: 1_000.0,
            ..Default::default()
        })
        .expect("benchmark runs");
        let results = &report["results"];
        assert!(results["intents"].as_u64().unwrap_or(0) > 0, "{report}");
        // The workers matched and the feeding thread generated: both took CPU time, and the
        // one worker's time is what the per-event figure divides.
        let cpu = &results["cpu_ms"];
        assert!(cpu["workers"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
        assert!(cpu["generating"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
        assert_eq!(
            cpu["network"], 0.0,
            "no cluster, no network threads: {report}"
        );
        let per_event = results["cpu"]["worker_ns_per_event"]
            .as_f64()
            .unwrap_or(0.0);
        let workers_ms = cpu["workers"].as_f64().unwrap_or(0.0);
        assert!(
            (per_event * 4_000.0 / 1e6 - workers_ms).abs() < 1e-6 * workers_ms.max(1.0),
            "{report}"
        );
        assert!(
            results["cpu"]["work_index"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
        assert!(
            results["events_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
        assert_eq!(report["params"]["events"], 4_000);
    }
}
