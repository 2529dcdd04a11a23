//! Recovery: the dataflow's state rebuilt from the store on start — rules, open alerts, the
//! events still inside some window (as history) and the events after the checkpoint (as new:
//! their notification ids are deterministic, so enqueueing them again adds nothing).

use connectors::store::StoredEvent;

use super::*;

/// What the first step after a start is fed, and what the engine thread starts from.
pub(super) struct Recovered {
    /// The first step's input: rules, open alerts, history and unprocessed events.
    pub(super) input: StepInput,
    /// The active rules' metadata.
    pub(super) rules: ActiveRules,
    /// The checkpoint the events were read after.
    pub(super) processed: u64,
    /// The last event sequence number read (equal to `processed` when none came after it).
    pub(super) after: u64,
}

/// Reads everything the dataflow needs back from the store.
pub(super) fn recover(store: &dyn Store, lateness: i64) -> anyhow::Result<Recovered> {
    // Rebuild: rules, open alerts, history, and what came after the checkpoint.
    let time_zones: HashMap<String, String> = store
        .list_tenants()?
        .into_iter()
        .map(|t| (t.id, t.time_zone))
        .collect();
    let mut active = ActiveRules::default();
    let mut rules = Vec::new();
    let mut max_retention = 0;
    for stored in store.list_rules(None)? {
        let tz = time_zones
            .get(&stored.tenant)
            .map(String::as_str)
            .unwrap_or("UTC");
        match RuleUpdate::from_stored(&stored, tz) {
            // Disabled rules were never in this dataflow: nothing to remove.
            Ok(update) => {
                if let Some(compiled) = update.active() {
                    max_retention = max_retention.max(compiled.rule.retention_ms());
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
    let clock = now_ms();
    let mut history = Vec::new();
    if max_retention > 0 {
        let since = clock - max_retention - lateness;
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
    let schedules = recover_schedules(store, &time_zones)?;
    tracing::info!(
        rules = rules.len(),
        schedules = schedules.len(),
        open_alerts = restore.len(),
        history = history.len(),
        unprocessed = pending.len(),
        "rebuilding dataflow state from the store"
    );
    Ok(Recovered {
        input: StepInput {
            events: pending,
            history,
            rules,
            restore,
            schedules,
            clock_ms: Some(clock),
            committed: None,
        },
        rules: active,
        processed,
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
