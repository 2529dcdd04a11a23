//! Recovery: the dataflow's state rebuilt from the store on start, in two steps. First the
//! rules, open alerts and schedules; then the events still inside some window (as history) and
//! the events after the checkpoint (as new: their notification ids are deterministic, so
//! enqueueing them again adds nothing). Between the two the processes of a cluster agree on
//! the longest window any of their rules keeps ([`StepOutput::cluster_horizon_ms`]), since a
//! process replays history for tenants whose rules live on another.

use connectors::store::StoredEvent;

use super::*;

/// What the first step after a start is fed: the definitions and the state that lives beside
/// them, read before any event (in a cluster every process feeds its own, and the processes
/// then agree on how much history to replay).
pub(super) struct Definitions {
    /// Rules, open alerts and schedules; no events and no clock, so no window is judged before
    /// its history is back.
    pub(super) input: StepInput,
    /// The active rules' metadata.
    pub(super) rules: ActiveRules,
    /// The checkpoint: the last event sequence number whose notifications are enqueued.
    pub(super) processed: u64,
}

/// What the second step after a start is fed: the log read back.
pub(super) struct Replay {
    /// History (events inside some window, up to the checkpoint) and the unprocessed events
    /// after it, with the clock.
    pub(super) input: StepInput,
    /// The last event sequence number read (equal to the checkpoint when none came after it).
    pub(super) after: u64,
}

/// Reads the rules, open alerts, schedules and checkpoint back from the store.
pub(super) fn recover_definitions(store: &dyn Store) -> anyhow::Result<Definitions> {
    let time_zones: HashMap<String, String> = store
        .list_tenants()?
        .into_iter()
        .map(|t| (t.id, t.time_zone))
        .collect();
    let mut active = ActiveRules::default();
    let mut rules = Vec::new();
    for stored in store.list_rules(None)? {
        let tz = time_zones
            .get(&stored.tenant)
            .map(String::as_str)
            .unwrap_or("UTC");
        match RuleUpdate::from_stored(&stored, tz) {
            // Disabled rules were never in this dataflow: nothing to remove.
            Ok(update) => {
                if update.active().is_some() {
                    rules.push(active.apply(update));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "skipping a stored rule that no longer compiles")
            }
        }
    }
    let mut restore = Vec::new();
    for alert in store.open_alerts(None)? {
        let group = serde_json::from_str::<Vec<serde_json::Value>>(&alert.group_key)
            .map(|values| values.iter().map(AttrValue::from_json).collect::<Vec<_>>());
        let since = store
            .get_notification(&alert.tenant, &alert.notification_id)?
            .and_then(|n| {
                n.payload
                    .pointer("/window/start_ms")
                    .and_then(|v| v.as_i64())
            });
        if let (Ok(group), Some(since_window)) = (group, since) {
            restore.push(OpenAlert {
                tenant: alert.tenant,
                rule_id: alert.rule_id,
                group,
                since_window,
            });
        }
    }
    let processed: u64 = store
        .get_meta(PROCESSED_SEQ)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let schedules = recover_schedules(store, &time_zones)?;
    tracing::info!(
        rules = rules.len(),
        schedules = schedules.len(),
        open_alerts = restore.len(),
        "rebuilding dataflow state from the store"
    );
    Ok(Definitions {
        input: StepInput {
            rules,
            restore,
            schedules,
            horizon_ms: active.horizon_ms(),
            ..Default::default()
        },
        rules: active,
        processed,
    })
}

/// Reads the log back: the events of the last `horizon_ms` (plus the allowed lateness) up to
/// the checkpoint `processed` as history, and every event after it as new.
pub(super) fn replay_log(
    store: &dyn Store,
    processed: u64,
    horizon_ms: i64,
    lateness: i64,
) -> anyhow::Result<Replay> {
    let clock = now_ms();
    let mut history = Vec::new();
    if horizon_ms > 0 {
        let since = clock - horizon_ms - lateness;
        let mut after = 0;
        loop {
            let page = store.events_since_ts(since, after, 10_000)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            history.extend(
                page.iter()
                    .filter(|e| e.seq <= processed)
                    .filter_map(decoded),
            );
            if after >= processed {
                break;
            }
        }
    }
    let mut pending = Vec::new();
    let mut after = processed;
    loop {
        let page = store.events_after(after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        pending.extend(page.iter().filter_map(decoded));
    }
    tracing::info!(
        history = history.len(),
        unprocessed = pending.len(),
        "replaying the event log"
    );
    Ok(Replay {
        input: StepInput {
            events: pending,
            history,
            clock_ms: Some(clock),
            ..Default::default()
        },
        after,
    })
}

/// The enabled reports' schedules, each starting after its last scheduled run (so no slot runs
/// twice, and the report's catch-up policy decides what the downtime missed).
fn recover_schedules(
    store: &dyn Store,
    time_zones: &HashMap<String, String>,
) -> anyhow::Result<Vec<operators::ScheduleChange>> {
    let last: HashMap<(String, String), i64> = store
        .last_scheduled_runs()?
        .into_iter()
        .map(|(tenant, report, at)| ((tenant, report), at))
        .collect();
    let mut schedules = Vec::new();
    for report in store.list_reports(None)? {
        if !report.enabled {
            continue;
        }
        let tz = time_zones
            .get(&report.tenant)
            .map(String::as_str)
            .unwrap_or("UTC");
        let key = (report.tenant.clone(), report.id.clone());
        match crate::generate::report::schedule_of(&report, tz, last.get(&key).copied()) {
            Ok(schedule) => schedules.push(operators::ScheduleChange::Upsert(schedule)),
            Err(e) => tracing::error!(
                tenant = %report.tenant,
                report = %report.id,
                error = %e,
                "skipping a stored report whose schedule no longer reads"
            ),
        }
    }
    Ok(schedules)
}

/// A stored event back as the dataflow's event; one that no longer decodes is left out, said
/// in the log with its position so it can be found.
fn decoded(stored: &StoredEvent) -> Option<Event> {
    match event_from_stored(&stored.body, &stored.tenant) {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::error!(
                seq = stored.seq,
                tenant = %stored.tenant,
                id = %stored.id,
                error = %e,
                "skipping a stored event that no longer decodes"
            );
            None
        }
    }
}
