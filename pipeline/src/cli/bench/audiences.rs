//! `tidemark bench audiences`: audiences maintained by differential-dataflow under a stream of
//! events and contact updates, against the same audiences recomputed from scratch by DataFusion.
//!
//! - **load**: `contacts` contacts over `tenants` tenants, one audience per tenant (four
//!   shapes in turn: lapsing repeat buyers, VIP spenders, engaged email subscribers, lapsed
//!   buyers of one country), `history` events over the last 100 days, each in one step;
//! - **throughput**: `updates` input updates (events, and contact changes in the share
//!   `contact_share`) fed as fast as the engine takes them, in steps of `batch`, on the wall
//!   clock: updates/s sustained with the membership diffs produced;
//! - **latency**: `rate` updates/s for `seconds`, a step every `tick_ms`: from an update's
//!   arrival to the end of the step that emits the membership changes it causes (goal p99
//!   ≤ 250 ms; the pipeline adds its outbox commit to this);
//! - **memory**: resident memory added by the contacts and by the events, and per
//!   contact-in-audience;
//! - **recompute**: the audiences' sizes recomputed from scratch with DataFusion SQL over the
//!   same contacts and events at the engine's instant — they must agree with the engine — and
//!   the cost of that against one incremental step.

use std::time::{Duration, Instant};

use anyhow::Context;
use operators::audience::{Audience, AudienceConfig, AudienceEngine, Contact, DAY_MS};
use operators::{AttrValue, Attrs, Event, Num, SmolStr};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sql::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use sql::arrow::datatypes::{DataType, Field, Schema};
use sql::arrow::record_batch::RecordBatch;
use sql::datafusion::datasource::MemTable;
use sql::datafusion::prelude::SessionContext;

use super::{memory_mib, summary};

/// Parameters of `tidemark bench audiences`.
pub struct AudienceBenchArgs {
    pub contacts: usize,
    pub tenants: usize,
    pub history: usize,
    pub updates: usize,
    pub batch: usize,
    pub contact_share: f64,
    pub rate: usize,
    pub seconds: u64,
    pub tick_ms: u64,
    pub workers: usize,
}

/// The audience of a tenant, by shape (`tenant % 4`).
fn definition(shape: usize) -> Value {
    match shape {
        0 => json!({"name": "lapsing repeat buyers", "where": {"and": [
            {"event": "order", "in_last_days": 90, "op": ">=", "value": 2},
            {"not": {"event": "order", "in_last_days": 14, "op": ">=", "value": 1}}]}}),
        1 => json!({"name": "VIP spenders", "where": {"and": [
            {"contact": {"attr": "tier", "op": "=", "value": "vip"}},
            {"event": "order", "in_last_days": 30, "measure": "sum", "attr": "amount",
             "op": ">=", "value": 100}]}}),
        2 => json!({"name": "engaged email subscribers", "where": {"and": [
            {"contact": {"attr": "consent.email", "op": "=", "value": true}},
            {"event": "page_view", "in_last_days": 7, "op": ">=", "value": 3}]}}),
        _ => json!({"name": "lapsed KR buyers", "where": {"and": [
            {"contact": {"attr": "country", "op": "=", "value": "KR"}},
            {"event": "order", "in_last_days": 90, "measure": "last_seen", "op": ">",
             "value": 30}]}}),
    }
}

/// The same audiences in SQL over `contacts` and `events`, member counts per tenant.
fn recompute_sql(now: i64) -> Vec<String> {
    let day = DAY_MS;
    let query = |shape: usize, contact: &str, kind: &str, days: i64, having: String| {
        format!(
            "SELECT c.tenant, count(*) AS members FROM contacts c JOIN ( \
               SELECT tenant, customer_id FROM events \
               WHERE type = '{kind}' AND ts <= {now} AND ts > {now} - {window} \
               GROUP BY tenant, customer_id HAVING {having} \
             ) e ON c.tenant = e.tenant AND c.id = e.customer_id \
             WHERE c.shape = {shape}{contact} GROUP BY c.tenant",
            window = days * day
        )
    };
    let none_since = |days: i64| {
        format!(
            "sum(CASE WHEN ts > {now} - {} THEN 1 ELSE 0 END) = 0",
            days * day
        )
    };
    vec![
        query(
            0,
            "",
            "order",
            90,
            format!("count(*) >= 2 AND {}", none_since(14)),
        ),
        query(
            1,
            " AND c.tier = 'vip'",
            "order",
            30,
            "sum(amount) >= 100".into(),
        ),
        query(
            2,
            " AND c.consent_email",
            "page_view",
            7,
            "count(*) >= 3".into(),
        ),
        query(3, " AND c.country = 'KR'", "order", 90, none_since(30)),
    ]
}

/// A contact as the generator keeps it.
#[derive(Clone, Copy)]
struct ContactState {
    vip: bool,
    country: u8,
    consent_email: bool,
}

const COUNTRIES: [&str; 3] = ["KR", "JP", "US"];

impl ContactState {
    fn random(rng: &mut StdRng) -> ContactState {
        ContactState {
            vip: rng.random_bool(0.2),
            country: rng.random_range(0..COUNTRIES.len() as u8),
            consent_email: rng.random_bool(0.7),
        }
    }

    fn contact(&self, n: usize) -> Contact {
        Contact {
            email: Some(format!("c{n}@example.com")),
            consent: [("email".to_string(), self.consent_email)].into(),
            attributes: json!({
                "tier": if self.vip { "vip" } else { "standard" },
                "country": COUNTRIES[usize::from(self.country)],
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
            ..Contact::default()
        }
    }
}

/// An event as the recompute keeps it.
struct EventRecord {
    contact: u32,
    order: bool,
    ts_ms: i64,
    amount: f64,
}

/// One input update.
enum Update {
    Event(Event),
    Contact(usize),
}

/// The workload: contacts, their events, and everything fed so far for the recompute.
struct Workload {
    rng: StdRng,
    tenants: usize,
    contacts: Vec<ContactState>,
    events: Vec<EventRecord>,
    tenant_names: Vec<SmolStr>,
}

impl Workload {
    /// `events`: how many events the run will make at most. The record of them (kept for the
    /// recompute) is allocated at once, so growing it never stalls the timed phases.
    fn new(contacts: usize, tenants: usize, events: usize) -> Workload {
        let mut rng = StdRng::seed_from_u64(7);
        let contacts = (0..contacts)
            .map(|_| ContactState::random(&mut rng))
            .collect();
        Workload {
            rng,
            tenants,
            contacts,
            events: Vec::with_capacity(events),
            tenant_names: (0..tenants)
                .map(|t| SmolStr::new(format!("t{t:03}")))
                .collect(),
        }
    }

    fn tenant_of(&self, contact: usize) -> &SmolStr {
        &self.tenant_names[contact % self.tenants]
    }

    /// An event of a contact drawn with a skew (some contacts are far more active), at `ts_ms`.
    fn event(&mut self, ts_ms: i64) -> Event {
        let u: f64 = self.rng.random();
        let contact = ((u * u) * self.contacts.len() as f64) as usize;
        let order = self.rng.random_bool(0.6);
        let amount = f64::from(self.rng.random_range(5u32..=120));
        let id = self.events.len();
        self.events.push(EventRecord {
            contact: contact as u32,
            order,
            ts_ms,
            amount,
        });
        let attrs: Attrs = [
            (
                SmolStr::new("customer_id"),
                AttrValue::Str(SmolStr::new(format!("c{contact}"))),
            ),
            (SmolStr::new("amount"), AttrValue::Num(Num(amount))),
        ]
        .into_iter()
        .collect();
        Event {
            tenant: self.tenant_of(contact).clone(),
            event_type: SmolStr::new(if order { "order" } else { "page_view" }),
            ts_ms,
            id: SmolStr::new(format!("e{id}")),
            attrs,
        }
    }

    fn update(&mut self, now_ms: i64, contact_share: f64) -> Update {
        if self.rng.random_bool(contact_share) {
            let n = self.rng.random_range(0..self.contacts.len());
            self.contacts[n] = ContactState::random(&mut self.rng);
            Update::Contact(n)
        } else {
            Update::Event(self.event(now_ms))
        }
    }

    fn apply(&self, engine: &mut AudienceEngine, update: &Update) {
        match update {
            Update::Event(event) => engine.event(event),
            Update::Contact(n) => engine.upsert_contact(
                self.tenant_of(*n),
                &format!("c{n}"),
                &self.contacts[*n].contact(*n),
            ),
        }
    }

    /// The contacts and events as DataFusion tables.
    fn tables(&self) -> anyhow::Result<(RecordBatch, RecordBatch)> {
        let contacts = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![
                Field::new("tenant", DataType::Utf8, false),
                Field::new("id", DataType::Utf8, false),
                Field::new("shape", DataType::Int64, false),
                Field::new("tier", DataType::Utf8, false),
                Field::new("country", DataType::Utf8, false),
                Field::new("consent_email", DataType::Boolean, false),
            ])),
            vec![
                Self::strings(self.contacts.len(), |n| self.tenant_of(n).to_string()),
                Self::strings(self.contacts.len(), |n| format!("c{n}")),
                std::sync::Arc::new(Int64Array::from_iter_values(
                    (0..self.contacts.len()).map(|n| ((n % self.tenants) % 4) as i64),
                )) as ArrayRef,
                Self::strings(self.contacts.len(), |n| {
                    (if self.contacts[n].vip {
                        "vip"
                    } else {
                        "standard"
                    })
                    .to_string()
                }),
                Self::strings(self.contacts.len(), |n| {
                    COUNTRIES[usize::from(self.contacts[n].country)].to_string()
                }),
                std::sync::Arc::new(BooleanArray::from(
                    self.contacts
                        .iter()
                        .map(|c| c.consent_email)
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
            ],
        )?;
        let events = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![
                Field::new("tenant", DataType::Utf8, false),
                Field::new("customer_id", DataType::Utf8, false),
                Field::new("type", DataType::Utf8, false),
                Field::new("ts", DataType::Int64, false),
                Field::new("amount", DataType::Float64, false),
            ])),
            vec![
                Self::strings(self.events.len(), |i| {
                    self.tenant_of(self.events[i].contact as usize).to_string()
                }),
                Self::strings(self.events.len(), |i| {
                    format!("c{}", self.events[i].contact)
                }),
                Self::strings(self.events.len(), |i| {
                    (if self.events[i].order {
                        "order"
                    } else {
                        "page_view"
                    })
                    .to_string()
                }),
                std::sync::Arc::new(Int64Array::from_iter_values(
                    self.events.iter().map(|e| e.ts_ms),
                )) as ArrayRef,
                std::sync::Arc::new(Float64Array::from_iter_values(
                    self.events.iter().map(|e| e.amount),
                )) as ArrayRef,
            ],
        )?;
        Ok((contacts, events))
    }

    fn strings(len: usize, value: impl Fn(usize) -> String) -> ArrayRef {
        std::sync::Arc::new(StringArray::from_iter_values((0..len).map(value)))
    }
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs the benchmark and reports its parameters and results as one JSON object.
pub async fn run(args: AudienceBenchArgs) -> anyhow::Result<Value> {
    anyhow::ensure!(args.tenants > 0, "tenants must be at least 1");
    anyhow::ensure!(args.batch > 0, "batch must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.contact_share),
        "contact_share is a share: 0 to 1"
    );
    // The engine is not Send: it lives on this blocking thread; the recompute comes back here.
    let (engine_part, workload, now) =
        tokio::task::spawn_blocking(move || incremental(&args)).await??;
    let sizes = engine_part.sizes.clone();
    let recompute = recompute(&workload, now, &sizes).await?;
    let step_ms = engine_part.report["throughput"]["step_ms"]["p50"]
        .as_f64()
        .unwrap_or(0.0);
    let recompute_ms = recompute["ms"].as_f64().unwrap_or(0.0);
    let mut report = engine_part.report;
    report["recompute"] = recompute;
    report["incremental_vs_recompute"] = json!({
        "step_p50_ms": step_ms,
        "recompute_ms": recompute_ms,
        "ratio": if recompute_ms > 0.0 { (step_ms / recompute_ms * 1e4).round() / 1e4 } else { 0.0 },
    });
    Ok(report)
}

/// What the incremental phases hand to the recompute.
struct EnginePart {
    report: Value,
    /// Members per (tenant, shape) at the end.
    sizes: Vec<u64>,
}

fn incremental(args: &AudienceBenchArgs) -> anyhow::Result<(EnginePart, Workload, i64)> {
    let rss_start = memory_mib("VmRSS");
    // Every update may be an event.
    let events = args.history + args.updates + args.rate * args.seconds as usize;
    let mut workload = Workload::new(args.contacts, args.tenants, events);
    let config = AudienceConfig {
        workers: args.workers,
        ..AudienceConfig::default()
    };
    let mut engine = AudienceEngine::new(config)?;
    for t in 0..args.tenants {
        let audience = Audience::compile(
            &format!("t{t:03}"),
            "a1",
            &definition(t % 4),
            AudienceConfig::default().max_window_days,
        )
        .map_err(|e| anyhow::anyhow!("audience of tenant {t}: {e}"))?;
        engine.upsert_audience(audience);
    }
    let rss_generated = memory_mib("VmRSS");

    // Load: contacts, then the history.
    let started = Instant::now();
    for n in 0..args.contacts {
        let contact = workload.contacts[n].contact(n);
        engine.upsert_contact(workload.tenant_of(n), &format!("c{n}"), &contact);
    }
    engine.step(wall_ms());
    let contacts_s = started.elapsed().as_secs_f64();
    let rss_contacts = memory_mib("VmRSS");
    let started = Instant::now();
    let now = wall_ms();
    let history: Vec<Event> = (0..args.history)
        .map(|_| {
            let age = workload.rng.random_range(0..100 * DAY_MS);
            workload.event(now - age)
        })
        .collect();
    for event in &history {
        engine.event(event);
    }
    drop(history);
    let loaded = engine.step(wall_ms());
    let history_s = started.elapsed().as_secs_f64();
    let rss_loaded = memory_mib("VmRSS");
    let memberships = engine.stats().memberships;
    eprintln!(
        "loaded {} contacts in {contacts_s:.1} s, {} events in {history_s:.1} s: {memberships} memberships",
        args.contacts, args.history
    );

    // Throughput: as fast as the engine takes them.
    let mut step_ms = Vec::new();
    let mut changes = 0u64;
    let started = Instant::now();
    let mut fed = 0;
    while fed < args.updates {
        let n = args.batch.min(args.updates - fed);
        let now = wall_ms();
        for _ in 0..n {
            let update = workload.update(now, args.contact_share);
            workload.apply(&mut engine, &update);
        }
        let step = Instant::now();
        changes += engine.step(wall_ms()).len() as u64;
        step_ms.push(step.elapsed().as_secs_f64() * 1e3);
        fed += n;
    }
    let throughput_s = started.elapsed().as_secs_f64();
    let updates_per_s = args.updates as f64 / throughput_s;
    eprintln!("throughput: {updates_per_s:.0} updates/s, {changes} membership changes");

    // Latency at a fixed rate.
    let mut latency_ms = Vec::new();
    let mut latency_changes = 0u64;
    let mut late_steps = 0u64;
    let mut latency_step_ms = Vec::new();
    let mut latency_batch = Vec::new();
    let started = Instant::now();
    let mut next = 0usize;
    let total = args.rate * args.seconds as usize;
    while next < total {
        let tick = Instant::now();
        let due = ((started.elapsed().as_secs_f64() * args.rate as f64) as usize).min(total);
        let now = wall_ms();
        let batch = next..due;
        for _ in batch.clone() {
            let update = workload.update(now, args.contact_share);
            workload.apply(&mut engine, &update);
        }
        let step = Instant::now();
        latency_changes += engine.step(wall_ms()).len() as u64;
        latency_step_ms.push(step.elapsed().as_secs_f64() * 1e3);
        latency_batch.push((due - next) as f64);
        let done = started.elapsed().as_secs_f64();
        for i in batch {
            latency_ms.push((done - i as f64 / args.rate as f64) * 1e3);
        }
        next = due;
        let spent = tick.elapsed();
        match Duration::from_millis(args.tick_ms).checked_sub(spent) {
            Some(rest) => std::thread::sleep(rest),
            None => late_steps += 1,
        }
    }
    let rss_end = memory_mib("VmRSS");
    let stats = engine.stats();
    let now = engine.time_ms();
    let sizes = (0..args.tenants)
        .map(|t| {
            engine
                .members(&format!("t{t:03}"), "a1")
                .map_or(0, |m| m.len() as u64)
        })
        .collect::<Vec<_>>();
    let contact_mib = rss_contacts - rss_generated;
    let event_mib = rss_loaded - rss_contacts;
    let report = json!({
        "contacts": args.contacts,
        "tenants": args.tenants,
        "workers": args.workers,
        "audiences": stats.audiences,
        "load": {
            "contacts_s": round(contacts_s),
            "history_events": args.history,
            "history_s": round(history_s),
            "history_events_per_s": (args.history as f64 / history_s).round(),
            "memberships_after_load": memberships,
            "changes_of_load": loaded.len(),
        },
        "throughput": {
            "updates": args.updates,
            "batch": args.batch,
            "contact_share": args.contact_share,
            "seconds": round(throughput_s),
            "updates_per_s": updates_per_s.round(),
            "membership_changes": changes,
            "step_ms": summary(step_ms),
            "goal_updates_per_s": 200_000,
        },
        "latency": {
            "rate": args.rate,
            "seconds": args.seconds,
            "tick_ms": args.tick_ms,
            "update_to_change_ms": summary(latency_ms),
            "step_ms": summary(latency_step_ms),
            "updates_per_step": summary(latency_batch),
            "membership_changes": latency_changes,
            "steps_over_tick": late_steps,
            "goal_p99_ms": 250,
        },
        "memory": {
            "rss_start_mib": round(rss_start),
            "workload_mib": round(rss_generated - rss_start),
            "contacts_mib": round(contact_mib),
            "history_mib": round(event_mib),
            "rss_end_mib": round(rss_end),
            "bytes_per_contact": round(contact_mib * 1048576.0 / args.contacts.max(1) as f64),
            "bytes_per_history_event": round(event_mib * 1048576.0 / args.history.max(1) as f64),
            "bytes_per_membership_of_all_state": round((contact_mib + event_mib) * 1048576.0 / memberships.max(1) as f64),
        },
        "memberships_at_end": stats.memberships,
        "events_kept": stats.events,
    });
    Ok((EnginePart { report, sizes }, workload, now))
}

/// The same audiences from scratch in DataFusion at the engine's instant; fails when a tenant's
/// size differs from the engine's.
async fn recompute(workload: &Workload, now: i64, sizes: &[u64]) -> anyhow::Result<Value> {
    let (contacts, events) = workload.tables()?;
    let ctx = SessionContext::new();
    ctx.register_table(
        "contacts",
        std::sync::Arc::new(MemTable::try_new(contacts.schema(), vec![vec![contacts]])?),
    )?;
    ctx.register_table(
        "events",
        std::sync::Arc::new(MemTable::try_new(events.schema(), vec![vec![events]])?),
    )?;
    let mut timings = Vec::new();
    let mut answer = vec![0u64; sizes.len()];
    for run in 0..3 {
        let started = Instant::now();
        for sql in recompute_sql(now) {
            let batches = ctx.sql(&sql).await?.collect().await?;
            if run > 0 {
                continue;
            }
            for batch in batches {
                let tenants = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .context("tenant column")?;
                let members = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .context("members column")?;
                for i in 0..batch.num_rows() {
                    let t: usize = tenants.value(i)[1..].parse()?;
                    answer[t] = members.value(i) as u64;
                }
            }
        }
        timings.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let differing: Vec<usize> = (0..sizes.len())
        .filter(|&t| answer[t] != sizes[t])
        .collect();
    anyhow::ensure!(
        differing.is_empty(),
        "the engine and the recompute disagree for {} tenants, e.g. t{:03}: engine {}, SQL {}",
        differing.len(),
        differing[0],
        sizes[differing[0]],
        answer[differing[0]]
    );
    timings.sort_by(f64::total_cmp);
    Ok(json!({
        "events": workload.events.len(),
        "ms": round(timings[timings.len() / 2]),
        "runs_ms": timings.iter().map(|t| round(*t)).collect::<Vec<_>>(),
        "members": sizes.iter().sum::<u64>(),
        "agrees_with_engine": true,
    }))
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
