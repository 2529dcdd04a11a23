//! CRM audiences in the server: the audience thread and the handle the API holds.
//!
//! ```text
//! PUT /v1/contacts, /v1/audiences ─► AudienceService (checks) ─► command ─┐
//! each commit's events, handed over by the committer (decoded) ──────────┤
//! the event log (events after the position, when none are handed over) ──┤
//!                                                                        ▼
//!   "tidemark-audiences" thread: operators::audience::AudienceEngine (differential-dataflow)
//!       customer.* events change contacts; every event feeds the engine; a step per tick
//!                                                                        ▼
//!   store (Audiences): contacts changed by events, membership changes, members, sizes and
//!   the log position, one transaction per step
//! ```
//!
//! The committer hands each commit's decoded events over ([`AudienceService::offer`]); the
//! thread takes them when they follow on from its position and otherwise reads the log, so the
//! events it sees are the log's, in log order, either way.
//!
//! The thread owns the engine (timely workers are not `Send`). Contact and audience changes
//! from the API are written to the store by the thread and applied to the engine in the same
//! breath, so the store and the engine never disagree about what the engine was given. On
//! start it rebuilds the engine from the store — audiences, contacts, and the events inside
//! the longest window up to the committed position — and records, as changes at that instant,
//! whatever differs from the members it had committed (time passed while it was down).

pub mod contact;
pub mod retention;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use connectors::store::{
    AudienceSize, AudienceStep, Handover, MembershipChangeRow, Store, StoreError, StoredAudience,
    StoredContact,
};
use operators::audience::{Audience, AudienceConfig, AudienceEngine, Contact, MembershipChange};
use operators::{Event, SmolStr};
use tokio::sync::oneshot;

use crate::ingest::event_body::event_from_stored;
use crate::ingest::now_ms;

pub use contact::{ContactError, check_id, parse_contact};

/// How often the thread reads the log and steps the engine when nothing wakes it sooner.
const TICK: Duration = Duration::from_millis(50);
/// Events read from the log per step.
const EVENTS_PER_STEP: usize = 20_000;
/// Contacts read per page on recovery.
const RECOVERY_PAGE: usize = 10_000;
/// Most handed-over commits, and events in them, waiting for the thread; past either the
/// oldest are dropped (and read from the log instead).
const MAX_OFFERED: usize = 256;
const MAX_OFFERED_EVENTS: usize = 4 * EVENTS_PER_STEP;

/// Events handed over by the committer: each with its log position.
type Offered = Handover<(u64, Event)>;

/// What the API asks of the audience thread.
enum Command {
    PutContacts {
        tenant: String,
        contacts: Vec<(String, Contact)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DeleteContact {
        tenant: String,
        id: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    PutAudience {
        audience: Box<Audience>,
        stored: StoredAudience,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DeleteAudience {
        tenant: String,
        id: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

/// Why an audience definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct DefinitionError {
    /// Where in the definition, e.g. `where.and[1].event`.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audience thread has stopped.
    #[error("the audience engine is not running")]
    Stopped,
}

/// Of `event`, what [`Worker::step`] reads: all of it for a `customer.*` event or one that names
/// a contact; of any other, its tenant and type (which the thread records as seen) — the engine
/// passes over an event without a contact — so most events are handed over without copying
/// their attributes.
fn what_a_step_reads(event: &Event) -> Event {
    if event.event_type.starts_with(contact::CUSTOMER_PREFIX)
        || operators::audience::contact_of(&event.attrs).is_some()
    {
        return event.clone();
    }
    Event {
        tenant: event.tenant.clone(),
        event_type: event.event_type.clone(),
        ts_ms: event.ts_ms,
        id: event.id.clone(),
        attrs: Default::default(),
    }
}

/// What the API may refer to: per tenant, the contact attributes and event types seen.
#[derive(Default)]
struct Known {
    attributes: HashMap<String, BTreeSet<String>>,
    event_types: HashMap<String, BTreeSet<String>>,
}

impl Known {
    fn learn_contact(&mut self, tenant: &str, contact: &Contact) {
        if contact.attributes.is_empty() {
            return;
        }
        self.attributes
            .entry(tenant.to_string())
            .or_default()
            .extend(contact.attributes.keys().cloned());
    }
}

/// The handle the API holds.
pub struct AudienceService {
    commands: Mutex<Sender<Command>>,
    known: Arc<RwLock<Known>>,
    max_window_days: u32,
    offered: Arc<Offered>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AudienceService {
    /// Starts the audience thread over `store`: it rebuilds the engine, then follows the log.
    pub fn start(store: Arc<dyn Store>, config: AudienceConfig) -> anyhow::Result<Arc<Self>> {
        let engine = AudienceEngine::new(config)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let known = Arc::new(RwLock::new(Known::default()));
        let offered = Arc::new(Offered::new(MAX_OFFERED, MAX_OFFERED_EVENTS));
        let thread = {
            let (known, offered) = (known.clone(), offered.clone());
            std::thread::Builder::new()
                .name("tidemark-audiences".into())
                .spawn(move || run(engine, store, config, known, offered, rx))?
        };
        Ok(Arc::new(AudienceService {
            commands: Mutex::new(tx),
            known,
            max_window_days: config.max_window_days,
            offered,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Hands over events the log has just committed (called by the process's only writer, as
    /// it commits): `after` is the log's last position before them, `events` each event with
    /// its position, in log order. The thread takes them instead of reading them back from the
    /// log when they follow on from its position; anything else it reads from the log.
    pub fn offer(&self, after: u64, events: &[(u64, &Event)]) {
        let kept = events
            .iter()
            .map(|&(seq, event)| (seq, what_a_step_reads(event)));
        self.offered.offer(after, kept.collect());
    }

    /// Stops the thread (after its current step) and waits for it.
    pub fn shutdown(&self) {
        // Replacing the sender drops the thread's only way to hear from us: it ends.
        let (dead, _) = std::sync::mpsc::channel();
        *self.commands.lock().unwrap_or_else(|e| e.into_inner()) = dead;
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(command(reply))
            .map_err(|_| ServiceError::Stopped)?;
        Ok(answer.await.map_err(|_| ServiceError::Stopped)??)
    }

    /// Adds or replaces contacts (already checked), stored before this returns.
    pub async fn put_contacts(
        &self,
        tenant: &str,
        contacts: Vec<(String, Contact)>,
    ) -> Result<(), ServiceError> {
        let tenant = tenant.to_string();
        self.call(|reply| Command::PutContacts {
            tenant,
            contacts,
            reply,
        })
        .await
    }

    /// Deletes a contact: it leaves every audience; whether it existed.
    pub async fn delete_contact(&self, tenant: &str, id: &str) -> Result<bool, ServiceError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.call(|reply| Command::DeleteContact { tenant, id, reply })
            .await
    }

    /// Checks a definition: compiled, and every attribute and event type it names known for
    /// the tenant.
    pub fn check(
        &self,
        tenant: &str,
        id: &str,
        definition: &serde_json::Value,
    ) -> Result<Audience, DefinitionError> {
        let audience =
            Audience::compile(tenant, id, definition, self.max_window_days).map_err(|e| {
                DefinitionError {
                    path: e.path,
                    problem: e.problem,
                }
            })?;
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let empty = BTreeSet::new();
        let attributes = known.attributes.get(tenant).unwrap_or(&empty);
        if let Some(unknown) = audience
            .contact_attributes()
            .into_iter()
            .find(|a| !attributes.contains(a))
        {
            return Err(DefinitionError {
                path: "where".into(),
                problem: format!(
                    "no contact of this tenant has the attribute '{unknown}' (known: {})",
                    list(attributes)
                ),
            });
        }
        let types = known.event_types.get(tenant).unwrap_or(&empty);
        if let Some(unknown) = audience
            .event_types()
            .into_iter()
            .find(|t| !types.contains(t.as_str()))
        {
            return Err(DefinitionError {
                path: "where".into(),
                problem: format!(
                    "this tenant has sent no '{unknown}' events (known: {})",
                    list(types)
                ),
            });
        }
        Ok(audience)
    }

    /// Adds or replaces an audience (checked by [`AudienceService::check`]).
    pub async fn put_audience(
        &self,
        audience: Audience,
        stored: StoredAudience,
    ) -> Result<(), ServiceError> {
        self.call(|reply| Command::PutAudience {
            audience: Box::new(audience),
            stored,
            reply,
        })
        .await
    }

    /// Deletes an audience with its members; whether it existed.
    pub async fn delete_audience(&self, tenant: &str, id: &str) -> Result<bool, ServiceError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.call(|reply| Command::DeleteAudience { tenant, id, reply })
            .await
    }
}

fn list(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        return "none yet".into();
    }
    let mut names: Vec<&str> = set.iter().map(String::as_str).take(20).collect();
    if set.len() > 20 {
        names.push("…");
    }
    names.join(", ")
}

fn contact_body(contact: &Contact) -> String {
    serde_json::to_string(contact).expect("a contact always serializes")
}

fn stored_contact(tenant: &str, id: &str, contact: &Contact, at_ms: i64) -> StoredContact {
    StoredContact {
        tenant: tenant.to_string(),
        id: id.to_string(),
        body: contact_body(contact),
        updated_at_ms: at_ms,
    }
}

/// The events a step takes.
struct Next {
    /// Each event with its log position, in log order.
    events: Vec<(u64, Event)>,
    /// The last log position they take the thread to (`None`: nothing new).
    read_to: Option<u64>,
    /// Whether more may be waiting.
    more: bool,
}

/// The audience thread's state.
struct Worker {
    store: Arc<dyn Store>,
    config: AudienceConfig,
    engine: AudienceEngine,
    known: Arc<RwLock<Known>>,
    offered: Arc<Offered>,
    /// Event types already recorded in the store, per tenant (looked up for every event, so
    /// by reference, without allocating).
    recorded_types: HashMap<String, HashSet<String>>,
    position: u64,
    /// The log position recovery read events up to: later events all reached the engine.
    recovered_to: u64,
    /// Of the events up to `recovered_to`, the engine holds those with an event time from
    /// here on; an audience with a longer window has the older ones read back first.
    held_since_ms: i64,
}

fn run(
    engine: AudienceEngine,
    store: Arc<dyn Store>,
    config: AudienceConfig,
    known: Arc<RwLock<Known>>,
    offered: Arc<Offered>,
    commands: Receiver<Command>,
) {
    let mut worker = Worker {
        engine,
        store,
        config,
        known,
        offered,
        recorded_types: HashMap::new(),
        position: 0,
        recovered_to: 0,
        held_since_ms: i64::MAX,
    };
    while let Err(e) = worker.recover() {
        tracing::error!(error = %e, "audiences: recovery failed; trying again in 5 s");
        // Recovery starts from an empty engine.
        loop {
            std::thread::sleep(Duration::from_secs(5));
            match AudienceEngine::new(config) {
                Ok(engine) => break worker.engine = engine,
                Err(e) => tracing::error!(error = %e, "audiences: trying again in 5 s"),
            }
        }
    }
    loop {
        match commands.recv_timeout(TICK) {
            Ok(command) => {
                worker.handle(command);
                while let Ok(command) = commands.try_recv() {
                    worker.handle(command);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        loop {
            match worker.step() {
                Ok(false) => break,
                // More events wait in the log: commands wait at most one step meanwhile.
                Ok(true) => {
                    while let Ok(command) = commands.try_recv() {
                        worker.handle(command);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "audiences: step failed; trying again");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
    tracing::info!("audiences: stopped");
}

impl Worker {
    fn handle(&mut self, command: Command) {
        match command {
            Command::PutContacts {
                tenant,
                contacts,
                reply,
            } => {
                let at = now_ms();
                let rows: Vec<StoredContact> = contacts
                    .iter()
                    .map(|(id, c)| stored_contact(&tenant, id, c, at))
                    .collect();
                let outcome = self.store.put_contacts(&rows);
                if outcome.is_ok() {
                    let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
                    for (id, contact) in &contacts {
                        known.learn_contact(&tenant, contact);
                        self.engine.upsert_contact(&tenant, id, contact);
                    }
                }
                let _ = reply.send(outcome);
            }
            Command::DeleteContact { tenant, id, reply } => {
                let outcome = self.store.delete_contact(&tenant, &id);
                if outcome.is_ok() {
                    self.engine.delete_contact(&tenant, &id);
                }
                let _ = reply.send(outcome);
            }
            Command::PutAudience {
                audience,
                stored,
                reply,
            } => {
                let since = now_ms().saturating_sub(audience.longest_window_ms());
                let outcome = self
                    .read_back(since)
                    .and_then(|_| self.store.put_audience(&stored));
                if outcome.is_ok() {
                    self.engine.upsert_audience(*audience);
                }
                let _ = reply.send(outcome);
            }
            Command::DeleteAudience { tenant, id, reply } => {
                let outcome = self.store.delete_audience(&tenant, &id);
                if outcome.is_ok() {
                    self.engine.remove_audience(&tenant, &id);
                }
                let _ = reply.send(outcome);
            }
        }
    }

    /// Takes the next events (handed over, or read from the log), steps the engine and
    /// commits; whether more events may be waiting.
    fn step(&mut self) -> Result<bool, StoreError> {
        let Next {
            events,
            read_to,
            more,
        } = self.next_events()?;
        let mut step = AudienceStep::default();
        // Contacts changed by this step's events, as they now are (None: deleted).
        let mut touched: HashMap<(String, String), Option<Contact>> = HashMap::new();
        for (_, event) in &events {
            self.learn_type(&event.tenant, &event.event_type, &mut step);
            if event.event_type.starts_with(contact::CUSTOMER_PREFIX) {
                self.customer_event(event, &mut touched);
            }
            self.engine.event(event);
        }
        if let Some(read_to) = read_to {
            self.position = read_to;
        }
        let at = now_ms();
        for ((tenant, id), contact) in touched {
            match contact {
                Some(contact) => step
                    .contacts_put
                    .push(stored_contact(&tenant, &id, &contact, at)),
                None => step.contacts_deleted.push((tenant, id)),
            }
        }
        let changes = self.engine.step(at);
        if changes.is_empty() && read_to.is_none() && step.contacts_put.is_empty() {
            return Ok(false);
        }
        self.record(changes, &mut step);
        step.position = self.position;
        self.store.commit_audience_step(&step)?;
        Ok(more)
    }

    /// The events after the position: those handed over when they follow on from it, else up
    /// to [`EVENTS_PER_STEP`] read from the log (an event that no longer decodes is skipped,
    /// with a warning).
    fn next_events(&mut self) -> Result<Next, StoreError> {
        let offered = self.offered.take(self.position, EVENTS_PER_STEP);
        if let Some(&(last, _)) = offered.last() {
            // The log may hold more after them: the next step looks.
            return Ok(Next {
                events: offered,
                read_to: Some(last),
                more: true,
            });
        }
        let stored = self.store.events_after(self.position, EVENTS_PER_STEP)?;
        let more = stored.len() == EVENTS_PER_STEP;
        let mut events = Vec::with_capacity(stored.len());
        for stored in &stored {
            match event_from_stored(&stored.body, &stored.tenant) {
                Ok(event) => events.push((stored.seq, event)),
                Err(e) => {
                    tracing::warn!(seq = stored.seq, error = %e, "audiences: unreadable event skipped");
                }
            }
        }
        Ok(Next {
            events,
            read_to: stored.last().map(|e| e.seq),
            more,
        })
    }

    fn learn_type(&mut self, tenant: &str, event_type: &str, step: &mut AudienceStep) {
        if self
            .recorded_types
            .get(tenant)
            .is_some_and(|types| types.contains(event_type))
        {
            return;
        }
        self.remember_type(tenant, event_type);
        step.new_event_types
            .push((tenant.to_string(), event_type.to_string()));
    }

    /// Records `event_type` as one `tenant` has sent: for the API's checks, and as recorded in
    /// the store.
    fn remember_type(&mut self, tenant: &str, event_type: &str) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .event_types
            .entry(tenant.to_string())
            .or_default()
            .insert(event_type.to_string());
        self.recorded_types
            .entry(tenant.to_string())
            .or_default()
            .insert(event_type.to_string());
    }

    /// Applies a `customer.*` event to its contact (read from the store unless this step
    /// changed it already); a bad one is logged and changes nothing.
    fn customer_event(
        &mut self,
        event: &Event,
        touched: &mut HashMap<(String, String), Option<Contact>>,
    ) {
        let Some(id) = operators::audience::contact_of(&event.attrs) else {
            tracing::warn!(tenant = %event.tenant, id = %event.id, "audiences: a customer event without a customer_id changes no contact");
            return;
        };
        let key = (event.tenant.to_string(), id.to_string());
        let current = match touched.get(&key) {
            Some(contact) => contact.clone(),
            None => match self.store.get_contact(&key.0, &key.1) {
                Ok(stored) => stored.and_then(|s| serde_json::from_str(&s.body).ok()),
                Err(e) => {
                    tracing::warn!(error = %e, "audiences: cannot read the contact of a customer event");
                    return;
                }
            },
        };
        match contact::apply_customer_event(event, current) {
            Ok(Some(contact)) => {
                self.known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .learn_contact(&key.0, &contact);
                self.engine.upsert_contact(&key.0, &key.1, &contact);
                touched.insert(key, Some(contact));
            }
            Ok(None) => {
                self.engine.delete_contact(&key.0, &key.1);
                touched.insert(key, None);
            }
            Err(e) => {
                tracing::warn!(tenant = %event.tenant, id = %event.id, error = %e, "audiences: customer event refused");
            }
        }
    }

    /// The step's membership changes as rows, with the new sizes of the audiences they touch.
    fn record(&mut self, changes: Vec<MembershipChange>, step: &mut AudienceStep) {
        let mut touched: BTreeSet<(SmolStr, SmolStr)> = BTreeSet::new();
        for change in changes {
            touched.insert((change.tenant.clone(), change.audience.clone()));
            step.changes.push(MembershipChangeRow {
                tenant: change.tenant.to_string(),
                audience: change.audience.to_string(),
                contact: change.contact.to_string(),
                at_ms: change.at_ms,
                entered: change.entered,
            });
        }
        let at = self.engine.time_ms();
        for (tenant, audience) in touched {
            let size = self
                .engine
                .members(&tenant, &audience)
                .map_or(0, |m| m.len() as u64);
            step.sizes.push(AudienceSize {
                tenant: tenant.to_string(),
                audience: audience.to_string(),
                at_ms: at,
                size,
            });
        }
    }

    /// Feeds the engine the events up to `recovered_to` with an event time from `since_ms` on
    /// that it does not hold yet (those before `held_since_ms`); how many.
    fn read_back(&mut self, since_ms: i64) -> Result<usize, StoreError> {
        if since_ms >= self.held_since_ms {
            return Ok(0);
        }
        let mut events = 0;
        let mut after_seq = 0;
        'read: loop {
            let page = self
                .store
                .events_since_ts(since_ms, after_seq, EVENTS_PER_STEP)?;
            let Some(last) = page.last() else { break };
            after_seq = last.seq;
            for stored in &page {
                if stored.seq > self.recovered_to {
                    break 'read;
                }
                if stored.ts_ms >= self.held_since_ms {
                    continue;
                }
                if let Ok(event) = event_from_stored(&stored.body, &stored.tenant) {
                    self.engine.event(&event);
                    events += 1;
                }
            }
        }
        self.held_since_ms = since_ms;
        Ok(events)
    }

    /// Rebuilds the engine from the store and commits what changed while the server was down.
    fn recover(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.position = self.store.audience_position()?;
        let mut longest = 0i64;
        let audiences = self.store.list_audiences(None)?;
        for stored in &audiences {
            let definition: serde_json::Value = match serde_json::from_str(&stored.body) {
                Ok(value) => value,
                Err(e) => {
                    tracing::error!(tenant = %stored.tenant, audience = %stored.id, error = %e, "audiences: stored definition unreadable; skipped");
                    continue;
                }
            };
            match Audience::compile(
                &stored.tenant,
                &stored.id,
                &definition,
                self.config.max_window_days,
            ) {
                Ok(audience) => {
                    longest = longest.max(audience.longest_window_ms());
                    self.engine.upsert_audience(audience);
                }
                Err(e) => {
                    tracing::error!(tenant = %stored.tenant, audience = %stored.id, error = %e, "audiences: stored definition no longer compiles; skipped");
                }
            }
        }
        let mut contacts = 0usize;
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self.store.list_contacts(
                None,
                after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
                RECOVERY_PAGE,
            )?;
            let Some(last) = page.last() else { break };
            after = Some((last.tenant.clone(), last.id.clone()));
            let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
            for stored in &page {
                match serde_json::from_str::<Contact>(&stored.body) {
                    Ok(contact) => {
                        known.learn_contact(&stored.tenant, &contact);
                        self.engine
                            .upsert_contact(&stored.tenant, &stored.id, &contact);
                        contacts += 1;
                    }
                    Err(e) => {
                        tracing::error!(tenant = %stored.tenant, contact = %stored.id, error = %e, "audiences: stored contact unreadable; skipped");
                    }
                }
            }
        }
        for (tenant, event_type) in self.store.known_event_types()? {
            self.remember_type(&tenant, &event_type);
        }
        let now = now_ms();
        self.recovered_to = self.position;
        let events = if longest > 0 {
            self.read_back(now - longest)?
        } else {
            self.held_since_ms = now;
            0
        };
        self.engine.step(now);
        // What the engine holds now against what was committed: the difference happened
        // while the server was down, and is recorded as changes at this instant.
        let mut committed: HashMap<(String, String), HashSet<String>> = HashMap::new();
        for (tenant, audience, member) in self.store.all_members()? {
            committed
                .entry((tenant, audience))
                .or_default()
                .insert(member.contact);
        }
        let at = self.engine.time_ms();
        let mut changes = Vec::new();
        for stored in &audiences {
            let key = (stored.tenant.clone(), stored.id.clone());
            let before = committed.remove(&key).unwrap_or_default();
            let now_members = self.engine.members(&stored.tenant, &stored.id);
            for contact in now_members.into_iter().flat_map(|m| m.keys()) {
                if !before.contains(contact.as_str()) {
                    changes.push(change(&key, contact, at, true));
                }
            }
            for contact in &before {
                if !self.engine.is_member(&stored.tenant, &stored.id, contact) {
                    changes.push(change(&key, contact, at, false));
                }
            }
        }
        let mut step = AudienceStep {
            position: self.position,
            ..AudienceStep::default()
        };
        self.record(changes, &mut step);
        let recorded = step.changes.len();
        self.store.commit_audience_step(&step)?;
        tracing::info!(
            audiences = audiences.len(),
            contacts,
            events,
            changes_while_down = recorded,
            ms = started.elapsed().as_millis() as u64,
            "audiences: rebuilt"
        );
        Ok(())
    }
}

fn change(key: &(String, String), contact: &str, at_ms: i64, entered: bool) -> MembershipChange {
    MembershipChange {
        at_ms,
        tenant: SmolStr::new(&key.0),
        audience: SmolStr::new(&key.1),
        contact: SmolStr::new(contact),
        entered,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use connectors::store::NewEvent;
    use serde_json::json;

    use super::*;
    use crate::ingest::event_body::stored_body;

    fn order(id: &str, customer: &str) -> Event {
        let document = json!({"id": id, "type": "order", "ts": now_ms(),
                              "attrs": {"customer_id": customer}});
        Event::from_json(&document, "shop").expect("an order")
    }

    /// Appends `events` to the log as the committer does: the log's end before them, and each
    /// event with its position.
    fn log(store: &dyn Store, events: &[Event]) -> (u64, Vec<(u64, Event)>) {
        let after = store.last_event_seq().expect("the log's end");
        let rows: Vec<NewEvent> = events
            .iter()
            .map(|e| NewEvent {
                id: e.id.to_string(),
                tenant: e.tenant.to_string(),
                event_type: e.event_type.to_string(),
                ts_ms: e.ts_ms,
                body: stored_body(e),
            })
            .collect();
        let outcomes = store.append_events(&rows).expect("appended");
        let positioned = outcomes
            .iter()
            .zip(events)
            .map(|(outcome, event)| (outcome.seq(), event.clone()))
            .collect();
        (after, positioned)
    }

    /// Events as the committer lends them to a feed.
    fn lend(events: &[(u64, Event)]) -> Vec<(u64, &Event)> {
        events.iter().map(|(seq, event)| (*seq, event)).collect()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "waited 20 s for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn events_handed_over_or_read_from_the_log_count_once_each() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = connectors::store::open(dir.path().join("tidemark.db")).expect("store");
        let service = AudienceService::start(store.clone(), AudienceConfig::default())
            .expect("the audience thread");
        let contacts = ["c1", "c2", "c3"]
            .map(|id| (id.to_string(), Contact::default()))
            .to_vec();
        service
            .put_contacts("shop", contacts)
            .await
            .expect("contacts");

        // Logged but never handed over: the thread reads it from the log.
        log(store.as_ref(), &[order("o1", "c1")]);
        let repeat_buyers = json!({"event": "order", "in_last_days": 1, "op": ">=", "value": 2});
        let definition = json!({"where": repeat_buyers});
        until("the order type learnt from the log", || {
            service.check("shop", "repeat", &definition).is_ok()
        })
        .await;
        let audience = service
            .check("shop", "repeat", &definition)
            .expect("checked");
        let stored = StoredAudience {
            tenant: "shop".into(),
            id: "repeat".into(),
            version: 1,
            body: definition.to_string(),
            updated_at_ms: now_ms(),
        };
        service.put_audience(audience, stored).await.expect("put");

        // Handed over where it follows on: c3's only order, which must count once.
        let (after, events) = log(store.as_ref(), &[order("o2", "c3")]);
        service.offer(after, &lend(&events));
        // A commit that was never handed over, then one that was: the second does not follow
        // on from what the thread has read, so both come from the log, once each.
        log(store.as_ref(), &[order("o3", "c1")]);
        let (after, events) = log(store.as_ref(), &[order("o4", "c2")]);
        service.offer(after, &lend(&events));
        // Handed over after them (or already read from the log with them): c2's second order,
        // and an event of a new type naming no contact, which is handed over without its
        // attributes and still learnt as a type of the tenant.
        let view = json!({"id": "v1", "type": "page_view", "ts": now_ms(), "attrs": {"page": "/"}});
        let view = Event::from_json(&view, "shop").expect("a page view");
        let (after, events) = log(store.as_ref(), &[order("o5", "c2"), view]);
        let last = events.last().map(|(seq, _)| *seq).expect("a position");
        service.offer(after, &lend(&events));

        until("every event taken", || {
            store.audience_position().expect("position") >= last
        })
        .await;
        until("c1 and c2 in", || {
            ["c1", "c2"]
                .iter()
                .all(|c| store.is_member("shop", "repeat", c).expect("membership"))
        })
        .await;
        assert!(
            !store.is_member("shop", "repeat", "c3").expect("membership"),
            "c3 ordered once: a handed-over event counts once"
        );
        assert_eq!(store.audience_size("shop", "repeat").expect("size"), 2);
        let viewers =
            json!({"where": {"event": "page_view", "in_last_days": 1, "op": ">=", "value": 1}});
        let learnt = service.check("shop", "viewers", &viewers);
        assert!(
            learnt.is_ok(),
            "page_view is a known type: {:?}",
            learnt.err()
        );
        service.shutdown();
    }
}
