//! Audiences: who of a tenant's contacts is in which audience, kept up to date by
//! differential-dataflow as contacts, events, definitions and the clock change.
//!
//! ```text
//! contacts (tenant → id, fields)  ⋈ definitions (tenant → contact conditions)
//!      → per (tenant, audience, contact): Base { version, mask of the conditions it meets }
//! events ((tenant, type) → contact, ts, attrs) ⋈ event atoms ((tenant, type) → filter, window)
//!      → per (tenant, audience, contact): Hit { atom, value }, valid while now ∈ [ts, ts + window)
//! Base ∪ Hits → reduce: counts and sums per atom, the formula → member (+1) or not
//!      → membership diffs: +1 a contact entered, −1 it left, at the instant it happened
//! ```
//!
//! Time is the wall clock in milliseconds. "In the last N days" is a temporal filter, as in
//! Materialize: a hit is inserted at `max(now, ts)` and its retraction is scheduled at
//! `ts + window` in the same breath, so a contact leaves "ordered in the last 14 days" the
//! moment the clock passes the 14 days, with no event arriving. Events themselves leave the
//! dataflow `max_window` after their time (the longest window a definition may use).
//!
//! Inside the dataflow, tenants, event types, audiences and contacts are numbers (`Names`), so
//! its arrangements sort and compare integers; attributes are shared by reference count
//! (`Shared`), so the copies differential makes of every row do not copy them.
//!
//! The engine runs on `workers` timely worker threads of its own. [`AudienceEngine::step`] deals
//! the changes given since the last step among them (each arrangement's rows then reach the
//! worker owning their key through timely's exchange, inside the dataflow), waits until every
//! worker has finished the step's instant, and returns the membership changes up to it,
//! consolidated: a contact that entered and left within one instant does not appear.

pub mod definition;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use differential_dataflow::AsCollection;
use differential_dataflow::input::{Input, InputSession};
use serde::{Deserialize, Serialize};
use timely::communication::WorkerGuards;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::core::Map;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::{ProbeHandle, Stream};
use timely::worker::Worker;

pub use definition::{
    Audience, AudienceError, CONTACT_ATTR, Contact, DAY_MS, EventAtom, Formula, Measure,
    contact_mask,
};

use crate::event::Event;
use crate::predicate::Predicate;
use crate::value::{AttrValue, Attrs, Num, SmolStr};
use crate::{HashMap, WorkerChannels};

/// Logical time: the wall clock, ms since the epoch.
type Time = u64;

/// A tenant, event type, audience or contact id as the dataflow knows it: a number given by
/// [`Names`], so the arrangements compare and hash numbers rather than strings.
type Name = u32;
/// (tenant, audience, contact).
type MemberKey = (Name, Name, Name);
/// A contact row: tenant → (contact id, its view).
type ContactRow = (Name, (Name, Shared<Attrs>));
/// (tenant, event type): the key events and atoms meet on.
type TypeKey = (Name, Name);

/// The numbers of the names the dataflow has seen. A name keeps its number for the engine's
/// life (a deleted contact's too: a few dozen bytes each).
#[derive(Default)]
struct Names {
    numbers: HashMap<SmolStr, Name>,
    names: Vec<SmolStr>,
}

impl Names {
    /// The number of `name`, given now if it has none.
    fn number(&mut self, name: &str) -> Name {
        if let Some(&number) = self.numbers.get(name) {
            return number;
        }
        let number = Name::try_from(self.names.len()).expect("fewer than 2^32 names");
        let name = SmolStr::new(name);
        self.names.push(name.clone());
        self.numbers.insert(name, number);
        number
    }

    /// The number of `name`, if it has one.
    fn get(&self, name: &str) -> Option<Name> {
        self.numbers.get(name).copied()
    }

    /// The name numbered `number`.
    fn name(&self, number: Name) -> &SmolStr {
        &self.names[number as usize]
    }
}

/// What the reduce sees per (tenant, audience, contact).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    /// The contact exists: the definition version and the contact conditions it meets.
    Base { version: u64, mask: u64 },
    /// One event counting for an atom now, with the value it adds to the atom's sum.
    Hit { atom: u8, value: Num },
}

/// A value shared by reference count. Differential's batches copy their values at every merge of
/// an arrangement, and held retractions copy them once more: an event's or a contact's
/// attributes are shared by those copies instead of allocated again for each.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    fn new(value: T) -> Self {
        Shared(Arc::new(value))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (*self.0).serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Shared::new)
    }
}

/// A definition's contact side, keyed by tenant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct DefRow {
    audience: Name,
    version: u64,
    conditions: Vec<Predicate>,
}

/// One event atom of a definition, keyed by (tenant, event type).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct AtomRow {
    audience: Name,
    atom: u8,
    spec: EventAtom,
}

/// An event as audiences keep it, keyed by (tenant, event type).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct EventRow {
    contact: Name,
    ts_ms: i64,
    id: SmolStr,
    attrs: Shared<Attrs>,
}

/// A contact entering or leaving an audience.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MembershipChange {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Tenant.
    pub tenant: SmolStr,
    /// Audience id.
    pub audience: SmolStr,
    /// Contact id.
    pub contact: SmolStr,
    /// Entered (true) or left (false).
    pub entered: bool,
}

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudienceConfig {
    /// The longest window a definition may use, days; events stay this long.
    pub max_window_days: u32,
    /// Timely worker threads the dataflow runs on (1 to [`MAX_WORKERS`]).
    pub workers: usize,
}

impl Default for AudienceConfig {
    fn default() -> Self {
        AudienceConfig {
            max_window_days: 400,
            workers: 2,
        }
    }
}

/// Most worker threads an audience engine may run.
pub const MAX_WORKERS: usize = 64;

/// Why an audience engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum AudienceEngineError {
    /// The worker count is out of range.
    #[error("audience engine: workers = {0} is out of range; use 1 to {MAX_WORKERS}")]
    Workers(usize),
    /// Timely could not start the worker threads.
    #[error("audience engine: its {workers} worker threads could not start: {reason}")]
    Start {
        /// Workers asked for.
        workers: usize,
        /// Timely's reason.
        reason: String,
    },
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudienceStats {
    /// Contacts held.
    pub contacts: u64,
    /// Audiences defined.
    pub audiences: u64,
    /// Memberships (contact, audience) now.
    pub memberships: u64,
    /// Events fed since start.
    pub events: u64,
    /// Updates fed to the dataflow since start (contacts, definitions, events).
    pub updates: u64,
}

/// Formulas by definition version (one sequence for all audiences), read by the reduce.
type Registry = Arc<RwLock<HashMap<u64, Arc<Formula>>>>;

/// What the workers' reduces emit: (member, time, diff), collected for the next `changes`.
type Output = Arc<Mutex<Vec<(MemberKey, Time, isize)>>>;

/// The running audience dataflow: its workers and what the next step feeds them.
pub struct AudienceEngine {
    /// One channel per worker, carrying its share of each step.
    rounds: Vec<Sender<Round>>,
    /// A worker's word that it finished a step's instant.
    done: Receiver<()>,
    guards: Option<WorkerGuards<()>>,
    output: Output,
    registry: Registry,
    max_window_ms: i64,
    /// The last instant stepped to; every change up to it is final.
    time: Time,
    next_version: u64,
    /// The numbers of tenants, event types, audiences and contacts.
    names: Names,
    /// Each contact's view as last given (to retract it on change), by (tenant, contact).
    contacts: HashMap<(Name, Name), Shared<Attrs>>,
    /// Each audience as last given, with its version.
    audiences: HashMap<(SmolStr, SmolStr), (u64, Audience)>,
    /// Versions replaced in the current step, dropped from the registry once it is done.
    retired: Vec<u64>,
    /// Members and the instant each entered, per (tenant, audience).
    members: HashMap<(SmolStr, SmolStr), BTreeMap<SmolStr, i64>>,
    /// Changes waiting for the next step.
    pending: Pending,
    stats: AudienceStats,
}

#[derive(Default)]
struct Pending {
    contacts: Vec<(ContactRow, isize)>,
    defs: Vec<((Name, DefRow), isize)>,
    atoms: Vec<((TypeKey, AtomRow), isize)>,
    events: Vec<(TypeKey, EventRow)>,
}

impl Pending {
    /// The rows of `audience` at `version` — its contact side and each event atom — with `diff`
    /// (+1 defines it, -1 retracts it).
    fn definition(&mut self, names: &mut Names, audience: &Audience, version: u64, diff: isize) {
        let (tenant, id) = (names.number(&audience.tenant), names.number(&audience.id));
        let conditions = audience.contact_conditions.clone();
        self.defs.push((
            (
                tenant,
                DefRow {
                    audience: id,
                    version,
                    conditions,
                },
            ),
            diff,
        ));
        for (i, atom) in audience.atoms.iter().enumerate() {
            self.atoms.push((
                (
                    (tenant, names.number(&atom.event_type)),
                    AtomRow {
                        audience: id,
                        atom: i as u8,
                        spec: atom.clone(),
                    },
                ),
                diff,
            ));
        }
    }
}

/// One worker's share of a step: rows at the step's instant (events also at the instant they
/// leave the longest window).
#[derive(Default)]
struct Round {
    now: Time,
    contacts: Vec<(ContactRow, isize)>,
    defs: Vec<((Name, DefRow), isize)>,
    atoms: Vec<((TypeKey, AtomRow), isize)>,
    events: Vec<((TypeKey, EventRow), Time, isize)>,
}

/// Deals `rows` round-robin into `hands` vectors.
fn deal<T>(rows: Vec<T>, hands: &mut [Round], pick: impl Fn(&mut Round) -> &mut Vec<T>) {
    let n = hands.len();
    for (i, row) in rows.into_iter().enumerate() {
        pick(&mut hands[i % n]).push(row);
    }
}

/// A worker's inputs and the probe that says when an instant is done.
struct Inputs {
    contacts: InputSession<Time, ContactRow, isize>,
    defs: InputSession<Time, (Name, DefRow), isize>,
    atoms: InputSession<Time, (TypeKey, AtomRow), isize>,
    events: InputSession<Time, (TypeKey, EventRow), isize>,
    probe: ProbeHandle<Time>,
}

impl Inputs {
    /// Feeds a round at its instant and closes the instant; returns the instant after it.
    fn feed(&mut self, round: Round) -> Time {
        let now = round.now;
        self.contacts.advance_to(now);
        self.defs.advance_to(now);
        self.atoms.advance_to(now);
        self.events.advance_to(now);
        for (row, diff) in round.contacts {
            self.contacts.update(row, diff);
        }
        for (row, diff) in round.defs {
            self.defs.update(row, diff);
        }
        for (row, diff) in round.atoms {
            self.atoms.update(row, diff);
        }
        for (row, time, diff) in round.events {
            self.events.update_at(row, time, diff);
        }
        let next = now + 1;
        self.contacts.advance_to(next);
        self.defs.advance_to(next);
        self.atoms.advance_to(next);
        self.events.advance_to(next);
        self.contacts.flush();
        self.defs.flush();
        self.atoms.flush();
        self.events.flush();
        next
    }
}

/// Builds the audience dataflow on `worker`; its membership diffs go to `sink`.
fn build(worker: &mut Worker, sink: Output, formulas: Registry) -> Inputs {
    let probe = ProbeHandle::new();
    let probe_handle = probe.clone();
    let (contacts, defs, atoms, events) = worker.dataflow::<Time, _, _>(|scope| {
        let (contacts_in, contacts) = scope.new_collection::<ContactRow, isize>();
        let (defs_in, defs) = scope.new_collection::<(Name, DefRow), isize>();
        let (atoms_in, atoms) = scope.new_collection::<(TypeKey, AtomRow), isize>();
        let (events_in, events) = scope.new_collection::<(TypeKey, EventRow), isize>();
        // An event's retraction is stamped with the instant it leaves the longest window.
        let events = hold_until_due(events.inner).as_collection();

        let base = contacts.join_map(defs, |tenant, (contact, view), def| {
            (
                (*tenant, def.audience, *contact),
                Part::Base {
                    version: def.version,
                    mask: contact_mask(&def.conditions, view),
                },
            )
        });
        let hits = events
            .join_map(atoms, |(tenant, _), event, atom| {
                let counts = atom
                    .spec
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.eval(&event.attrs));
                counts.then(|| {
                    (
                        (*tenant, atom.audience, event.contact),
                        atom.atom,
                        Num(atom.spec.value_of(&event.attrs)),
                        event.ts_ms,
                        atom.spec.window_ms,
                    )
                })
            })
            .inner
            .flat_map::<Vec<((MemberKey, Part), Time, isize)>, _, _>(
                |(hit, time, diff): (Option<_>, Time, isize)| {
                    // The temporal filter: a hit counts from its event's time (or now, if
                    // that is later) until its window has passed.
                    let mut out = Vec::new();
                    if let Some((key, atom, value, ts_ms, window_ms)) = hit {
                        let from = time.max(ts_ms.max(0) as Time);
                        let until = ts_ms.saturating_add(window_ms).max(0) as Time;
                        if until > from {
                            let part = Part::Hit { atom, value };
                            out.push(((key, part.clone()), from, diff));
                            out.push(((key, part), until, -diff));
                        }
                    }
                    out
                },
            );
        let hits = hold_until_due(hits).as_collection();

        base.concat(hits)
            .reduce(
                move |_: &MemberKey, parts: &[(&Part, isize)], out: &mut Vec<((), isize)>| {
                    if is_member(&formulas, parts) {
                        out.push(((), 1));
                    }
                },
            )
            .inspect_batch(move |_, diffs| {
                if let Ok(mut sink) = sink.lock() {
                    sink.extend(
                        diffs
                            .iter()
                            .map(|((key, ()), time, diff)| (*key, *time, *diff)),
                    );
                }
            })
            .probe_with(&probe_handle);
        (contacts_in, defs_in, atoms_in, events_in)
    });
    Inputs {
        contacts,
        defs,
        atoms,
        events,
        probe,
    }
}

impl AudienceEngine {
    /// Starts the dataflow on `config.workers` threads of its own.
    pub fn new(config: AudienceConfig) -> Result<AudienceEngine, AudienceEngineError> {
        let workers = config.workers;
        if workers == 0 || workers > MAX_WORKERS {
            return Err(AudienceEngineError::Workers(workers));
        }
        let output: Output = Arc::default();
        let registry: Registry = Arc::default();
        let (done_tx, done) = mpsc::channel();
        let (rounds, receivers) = WorkerChannels::<Round>::new(workers);
        let done_tx = Mutex::new(done_tx);
        let (sink, formulas) = (output.clone(), registry.clone());
        let timely_config = if workers == 1 {
            timely::Config::thread()
        } else {
            timely::Config::process(workers)
        };
        let guards = timely::execute(timely_config, move |worker| {
            let index = worker.index();
            let Some(rounds) = receivers.take(index) else {
                return;
            };
            let Some(done) = done_tx.lock().ok().map(|tx| tx.clone()) else {
                return;
            };
            let mut inputs = build(worker, sink.clone(), formulas.clone());
            while let Ok(round) = rounds.recv() {
                let next = inputs.feed(round);
                // Waiting for the other workers, a worker polls briefly, then parks until a
                // message wakes it.
                worker.step_or_park_while(None, || inputs.probe.less_than(&next));
                if done.send(()).is_err() {
                    break;
                }
            }
            // The engine is gone: drop the dataflow rather than run its scheduled retractions
            // (up to the longest window ahead) to completion.
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        })
        .map_err(|reason| AudienceEngineError::Start { workers, reason })?;
        Ok(AudienceEngine {
            rounds,
            done,
            guards: Some(guards),
            output,
            registry,
            names: Names::default(),
            max_window_ms: i64::from(config.max_window_days) * DAY_MS,
            time: 0,
            next_version: 1,
            contacts: HashMap::default(),
            audiences: HashMap::default(),
            retired: Vec::new(),
            members: HashMap::default(),
            pending: Pending::default(),
            stats: AudienceStats::default(),
        })
    }

    /// Adds or changes a contact, from the next step on.
    pub fn upsert_contact(&mut self, tenant: &str, id: &str, contact: &Contact) {
        let key = (self.names.number(tenant), self.names.number(id));
        let view = Shared::new(contact.view(id));
        if let Some(old) = self.contacts.get(&key) {
            if *old == view {
                return;
            }
            self.pending
                .contacts
                .push(((key.0, (key.1, old.clone())), -1));
        }
        self.pending
            .contacts
            .push(((key.0, (key.1, view.clone())), 1));
        self.contacts.insert(key, view);
    }

    /// Removes a contact from every audience, from the next step on.
    pub fn delete_contact(&mut self, tenant: &str, id: &str) {
        let (Some(tenant), Some(id)) = (self.names.get(tenant), self.names.get(id)) else {
            return;
        };
        let key = (tenant, id);
        if let Some(old) = self.contacts.remove(&key) {
            self.pending.contacts.push(((key.0, (key.1, old)), -1));
        }
    }

    /// Adds or replaces an audience definition, from the next step on.
    pub fn upsert_audience(&mut self, audience: Audience) {
        let key = (audience.tenant.clone(), audience.id.clone());
        self.retract_audience(&key);
        let version = self.next_version;
        self.next_version += 1;
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(version, Arc::new(audience.formula.clone()));
        self.pending
            .definition(&mut self.names, &audience, version, 1);
        self.members.entry(key.clone()).or_default();
        self.audiences.insert(key, (version, audience));
    }

    /// Removes an audience, from the next step on; it reports no more changes.
    pub fn remove_audience(&mut self, tenant: &str, id: &str) {
        let key = (SmolStr::new(tenant), SmolStr::new(id));
        self.retract_audience(&key);
        // Its members are dropped after the next step: an audience removed and defined again
        // before it is a replacement, whose members change only by what the new definition
        // changes.
        self.audiences.remove(&key);
    }

    fn retract_audience(&mut self, key: &(SmolStr, SmolStr)) {
        let Some((version, old)) = self.audiences.get(key) else {
            return;
        };
        self.pending.definition(&mut self.names, old, *version, -1);
        self.retired.push(*version);
    }

    /// Feeds an event; only events naming a contact (attribute `customer_id`, a string or a
    /// whole number) and younger than the longest window matter.
    pub fn event(&mut self, event: &Event) {
        let Some(contact) = contact_of(&event.attrs) else {
            return;
        };
        self.stats.events += 1;
        let key = (
            self.names.number(&event.tenant),
            self.names.number(&event.event_type),
        );
        self.pending.events.push((
            key,
            EventRow {
                contact: self.names.number(&contact),
                ts_ms: event.ts_ms,
                id: event.id.clone(),
                attrs: Shared::new(event.attrs.clone()),
            },
        ));
    }

    /// Applies the changes given since the last step at `now_ms` (or just after the last
    /// step, if the clock has not moved on), runs the dataflow until everything up to that
    /// instant is final, and returns the membership changes since the last step, in time order.
    pub fn step(&mut self, now_ms: i64) -> Vec<MembershipChange> {
        let now = (now_ms.max(0) as Time).max(self.time + 1);
        let pending = std::mem::take(&mut self.pending);
        self.stats.updates += (pending.contacts.len()
            + pending.defs.len()
            + pending.atoms.len()
            + pending.events.len()) as u64;
        let mut events = Vec::with_capacity(pending.events.len() * 2);
        for (key, row) in pending.events {
            let until = row.ts_ms.saturating_add(self.max_window_ms);
            if until <= now as i64 {
                continue;
            }
            events.push(((key, row.clone()), now, 1));
            events.push(((key, row), until as Time, -1));
        }
        let mut rounds: Vec<Round> = self
            .rounds
            .iter()
            .map(|_| Round {
                now,
                ..Round::default()
            })
            .collect();
        deal(pending.contacts, &mut rounds, |r| &mut r.contacts);
        deal(pending.defs, &mut rounds, |r| &mut r.defs);
        deal(pending.atoms, &mut rounds, |r| &mut r.atoms);
        deal(events, &mut rounds, |r| &mut r.events);
        for (worker, round) in self.rounds.iter().zip(rounds) {
            if worker.send(round).is_err() {
                self.stopped();
            }
        }
        let mut finished = 0;
        while finished < self.rounds.len() {
            match self.done.recv_timeout(Duration::from_secs(1)) {
                Ok(()) => finished += 1,
                // A worker that stopped (it can only have panicked) leaves the others waiting.
                Err(RecvTimeoutError::Timeout) => {
                    let guards = self.guards.as_ref().map(|g| g.guards());
                    if guards.is_some_and(|g| g.iter().any(|t| t.is_finished())) {
                        self.stopped();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => self.stopped(),
            }
        }
        self.time = now;
        {
            let mut registry = self
                .registry
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for version in self.retired.drain(..) {
                registry.remove(&version);
            }
        }
        self.changes()
    }

    /// A worker has stopped: a bug, after which no membership can be trusted.
    fn stopped(&self) -> ! {
        panic!("the audience dataflow stopped: one of its worker threads panicked");
    }

    /// Drains the dataflow's output into membership changes and applies them to the members.
    fn changes(&mut self) -> Vec<MembershipChange> {
        let raw = std::mem::take(&mut *self.output.lock().unwrap_or_else(PoisonError::into_inner));
        // In time order, then by name, as the changes are reported.
        let mut named: Vec<((Time, SmolStr, SmolStr, SmolStr), isize)> = raw
            .into_iter()
            .map(|((tenant, audience, contact), time, diff)| {
                let name = |n| self.names.name(n).clone();
                ((time, name(tenant), name(audience), name(contact)), diff)
            })
            .collect();
        named.sort();
        // Consolidate (time, member): the reduce emits one net change per key and time, but a
        // change may arrive in more than one batch.
        let mut merged: Vec<((Time, SmolStr, SmolStr, SmolStr), isize)> =
            Vec::with_capacity(named.len());
        for (key, diff) in named {
            match merged.last_mut() {
                Some(last) if last.0 == key => last.1 += diff,
                _ => merged.push((key, diff)),
            }
        }
        let mut out = Vec::new();
        for ((time, tenant, audience, contact), diff) in merged {
            if diff == 0 {
                continue;
            }
            let key = (tenant.clone(), audience.clone());
            if !self.audiences.contains_key(&key) {
                // A removed audience: its members leave with it, silently.
                continue;
            }
            let members = self.members.entry(key).or_default();
            let entered = diff > 0;
            if entered {
                members.insert(contact.clone(), time as i64);
            } else {
                members.remove(&contact);
            }
            out.push(MembershipChange {
                at_ms: time as i64,
                tenant,
                audience,
                contact,
                entered,
            });
        }
        let audiences = &self.audiences;
        self.members.retain(|key, _| audiences.contains_key(key));
        out
    }

    /// The members of an audience and when each entered, by contact id; `None` for an
    /// unknown audience.
    pub fn members(&self, tenant: &str, audience: &str) -> Option<&BTreeMap<SmolStr, i64>> {
        self.members
            .get(&(SmolStr::new(tenant), SmolStr::new(audience)))
    }

    /// Whether a contact is a member now.
    pub fn is_member(&self, tenant: &str, audience: &str, contact: &str) -> bool {
        self.members(tenant, audience)
            .is_some_and(|m| m.contains_key(contact))
    }

    /// The last instant stepped to.
    pub fn time_ms(&self) -> i64 {
        self.time as i64
    }

    /// Counters.
    pub fn stats(&self) -> AudienceStats {
        AudienceStats {
            contacts: self.contacts.len() as u64,
            audiences: self.audiences.len() as u64,
            memberships: self.members.values().map(|m| m.len() as u64).sum(),
            ..self.stats
        }
    }
}

impl Drop for AudienceEngine {
    fn drop(&mut self) {
        // Closing the channels ends the workers' loops; then wait for their threads. A worker
        // that panicked was reported by the panic hook when it did, and `step` refused to go on.
        self.rounds.clear();
        if let Some(guards) = self.guards.take() {
            let _ = guards.join();
        }
    }
}

/// Passes updates on, except those stamped later than the time they are sent at (a window's
/// end, a future event's start): those are held here and released when the frontier reaches
/// their time. Differential's batchers would otherwise keep them and walk all of them at every
/// step, making a step cost as much as every pending retraction.
fn hold_until_due<'scope, D: Clone + 'static>(
    stream: Stream<'scope, Time, Vec<(D, Time, isize)>>,
) -> Stream<'scope, Time, Vec<(D, Time, isize)>> {
    stream.unary_frontier::<CapacityContainerBuilder<Vec<(D, Time, isize)>>, _, _, _>(
        Pipeline,
        "HoldUntilDue",
        |_initial, _info| {
            let mut pending: BTreeMap<Time, Vec<(D, Time, isize)>> = BTreeMap::new();
            // A capability at the earliest held time: every release is delayed from it.
            let mut held: Option<Capability<Time>> = None;
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    // Messages of this dataflow always carry a time; one without may be passed on.
                    let now = cap.least().copied().unwrap_or(Time::MAX);
                    let mut session = output.session(&cap);
                    for (datum, time, diff) in data.drain(..) {
                        if time <= now {
                            session.give((datum, time, diff));
                        } else {
                            pending.entry(time).or_default().push((datum, time, diff));
                            if held.as_ref().is_none_or(|h| time < *h.time()) {
                                held = Some(cap.delayed(&time, 0));
                            }
                        }
                    }
                });
                let Some(cap) = held.as_mut() else { return };
                while let Some(entry) = pending.first_entry() {
                    let time = *entry.key();
                    if frontier.less_than(&time) {
                        break;
                    }
                    let due = entry.remove();
                    output
                        .session(&cap.delayed(&time))
                        .give_iterator(due.into_iter());
                }
                match pending.first_key_value() {
                    Some((&next, _)) => cap.downgrade(&next),
                    None => held = None,
                }
            }
        },
    )
}

/// The contact an event belongs to: its `customer_id`, a string or a whole number.
pub fn contact_of(attrs: &Attrs) -> Option<SmolStr> {
    match attrs.get(CONTACT_ATTR)? {
        AttrValue::Str(s) if !s.is_empty() => Some(s.clone()),
        AttrValue::Num(n) if n.0.fract() == 0.0 && n.0.abs() < 9e15 => {
            Some(SmolStr::new(format!("{}", n.0 as i64)))
        }
        _ => None,
    }
}

/// The reduce's logic: a contact with its Base part is a member when its definition's formula
/// holds over the mask and the atoms' counts and sums.
fn is_member(registry: &Registry, parts: &[(&Part, isize)]) -> bool {
    let mut base = None;
    let mut counts = [0i64; definition::MAX_EVENT_ATOMS];
    let mut sums = [0f64; definition::MAX_EVENT_ATOMS];
    for (part, diff) in parts {
        match part {
            Part::Base { version, mask } if *diff > 0 => base = Some((*version, *mask)),
            Part::Base { .. } => {}
            Part::Hit { atom, value } => {
                let i = usize::from(*atom);
                counts[i] += *diff as i64;
                sums[i] += value.0 * *diff as f64;
            }
        }
    }
    let Some((version, mask)) = base else {
        return false;
    };
    let registry = registry.read().unwrap_or_else(PoisonError::into_inner);
    let Some(formula) = registry.get(&version) else {
        return false;
    };
    formula.eval(mask, &counts, &sums)
}
