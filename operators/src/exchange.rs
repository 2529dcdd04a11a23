//! The form in which an epoch's events cross to another process of a cluster.
//!
//! Timely serializes what its exchange sends between processes with serde (bincode); left to
//! serde, an event is a few hundred bytes of fixed-width lengths, each attribute's name spelled
//! out, and decoding it validates and copies every name again. The events of a share are
//! written here instead as one block of bytes, in which every distinct tenant, type and
//! attribute name is spelled out once and named by its number after that (a share's events come
//! from few tenants and types and carry the same few names), lengths and counts are LEB128, and
//! values use the codec retained events use ([`crate::codec`]). Decoding clones the names it has
//! seen (a copy of an inline string, or a reference count) instead of checking and copying them
//! again. Ids and values are written in place: ids are unique, and numbering values cost more
//! than it saved (customers and SKUs are too many to repeat within a share).
//!
//! The block is self-contained: a share is decoded on its own, whatever was sent before. The
//! worker that sends a share encodes it as soon as it has it ([`ShareEvents::seal`]), loading
//! each event's attributes a few events ahead and dropping each event right after writing it:
//! the events were made by another thread and are mostly out of the worker's cache.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Reader, put_len, put_text, put_value};
use crate::dataflow::{Arrival, EventSlot, PREFETCH_AHEAD};
use crate::event::Event;
use crate::value::{AttrValue, Attrs, SmolStr, TextKey, copy_text, text};

/// Distinct texts numbered per share, at most: past this many (a share of very many tenants or
/// attribute names), text is written in place, so the tables stay small.
const MAX_NUMBERED: usize = 1 << 16;

/// Bytes of events encoded by this process, since it started.
static ENCODED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes of events this process has encoded for the other processes of its cluster since it
/// started (what its exchange sent of events, without timely's framing).
pub fn encoded_bytes() -> u64 {
    ENCODED_BYTES.load(Ordering::Relaxed)
}

/// Marks an empty slot, and each arrival.
const EMPTY: u8 = 0;
const ON_TIME: u8 = 1;
const LATE: u8 = 2;
const HISTORY: u8 = 3;

/// Texts numbered as the writer meets them. A text is written as one LEB128 number `n`: `n` even
/// names the text numbered `n / 2`; `n` odd spells out a text of `n / 2` bytes, which follow,
/// and numbers it next (while fewer than [`MAX_NUMBERED`] are).
///
/// Names, tenants and types are mostly short: those of up to 16 bytes are looked up by their
/// [`TextKey`], compared as integers without a `memcmp` call per text; longer ones by their text.
#[derive(Default)]
struct Numbering {
    short: hashbrown::HashMap<TextKey, u32, foldhash::fast::FixedState>,
    long: hashbrown::HashMap<SmolStr, u32, foldhash::fast::FixedState>,
}

impl Numbering {
    fn put(&mut self, out: &mut Vec<u8>, text: &SmolStr) {
        let key = TextKey::of(text);
        let known = match key {
            Some(key) => self.short.get(&key),
            None => self.long.get(text.as_str()),
        };
        if let Some(&number) = known {
            put_len(out, (number as usize) << 1);
            return;
        }
        put_len(out, (text.len() << 1) | 1);
        out.extend_from_slice(text.as_bytes());
        let next = self.short.len() + self.long.len();
        if next < MAX_NUMBERED {
            match key {
                Some(key) => self.short.insert(key, next as u32),
                None => self.long.insert(copy_text(text), next as u32),
            };
        }
    }
}

/// The reader's side of [`Numbering`].
#[derive(Default)]
struct Numbered {
    texts: Vec<SmolStr>,
    /// A text spelled out once the numbers ran out.
    unnumbered: SmolStr,
}

impl Numbered {
    /// The next text, borrowed from the numbers, for the caller to clone. Every path ends in a
    /// reference, so the clone is made once, straight into its place: merging `SmolStr`s from
    /// two paths makes the compiler pass them through the stack in overlapping pieces, and
    /// reading them back stalls (see [`Reader::value`]).
    #[inline(always)]
    fn read(&mut self, reader: &mut Reader<'_>) -> Option<&SmolStr> {
        let n = reader.len()?;
        if n & 1 == 0 {
            return self.texts.get(n >> 1);
        }
        let text = reader.text_of(n >> 1)?;
        if self.texts.len() < MAX_NUMBERED {
            self.texts.push(text);
            return self.texts.last();
        }
        self.unnumbered = text;
        Some(&self.unnumbered)
    }
}

/// Writes a share's events into one block of bytes, one event at a time.
struct Encoder {
    out: Vec<u8>,
    numbering: Numbering,
}

impl Encoder {
    /// A block for `count` events.
    fn new(count: usize) -> Encoder {
        let mut out = Vec::with_capacity(count * 64 + 8);
        put_len(&mut out, count);
        Encoder {
            out,
            numbering: Numbering::default(),
        }
    }

    fn put(&mut self, slot: &EventSlot) {
        let (out, numbering) = (&mut self.out, &mut self.numbering);
        let Some((event, arrival)) = slot else {
            out.push(EMPTY);
            return;
        };
        out.push(match arrival {
            Arrival::OnTime => ON_TIME,
            Arrival::Late => LATE,
            Arrival::History => HISTORY,
        });
        numbering.put(out, &event.tenant);
        numbering.put(out, &event.event_type);
        out.extend_from_slice(&event.ts_ms.to_le_bytes());
        put_text(out, &event.id);
        put_len(out, event.attrs.len());
        for (name, value) in &event.attrs {
            numbering.put(out, name);
            put_value(out, value);
        }
    }

    fn finish(self) -> Vec<u8> {
        ENCODED_BYTES.fetch_add(self.out.len() as u64, Ordering::Relaxed);
        self.out
    }
}

/// Each event's attributes are an allocation of their own, made by another thread and mostly
/// out of this core's cache by the time a share is encoded: this starts loading those of the
/// event a few places after `at`.
fn prefetch_ahead(events: &[EventSlot], at: usize) {
    if let Some(Some((ahead, _))) = events.get(at + PREFETCH_AHEAD) {
        ahead.attrs.prefetch();
    }
}

/// A share's events as one block of bytes.
fn encode(events: &[EventSlot]) -> Vec<u8> {
    let mut encoder = Encoder::new(events.len());
    for (at, slot) in events.iter().enumerate() {
        prefetch_ahead(events, at);
        encoder.put(slot);
    }
    encoder.finish()
}

/// The same block, each event taken out of `events` and dropped as soon as it is written,
/// while it is still in cache.
fn encode_taking(events: &mut [EventSlot]) -> Vec<u8> {
    let mut encoder = Encoder::new(events.len());
    for at in 0..events.len() {
        prefetch_ahead(events, at);
        encoder.put(&events[at].take());
    }
    encoder.finish()
}

/// What [`encode`] wrote; `None` when the bytes end early, run on, or make no sense.
fn decode(bytes: &[u8]) -> Option<Vec<EventSlot>> {
    let mut reader = Reader::new(bytes);
    let mut numbered = Numbered::default();
    let count = reader.len()?;
    // Every event takes a byte at least: a count past the bytes is malformed.
    let mut events = Vec::with_capacity(count.min(reader.remaining()));
    for _ in 0..count {
        let arrival = match reader.byte()? {
            EMPTY => {
                events.push(None);
                continue;
            }
            ON_TIME => Arrival::OnTime,
            LATE => Arrival::Late,
            HISTORY => Arrival::History,
            _ => return None,
        };
        let tenant = copy_text(numbered.read(&mut reader)?);
        let event_type = copy_text(numbered.read(&mut reader)?);
        let ts_ms = reader.u64()? as i64;
        let id = reader.text()?;
        let len = reader.len()?;
        let mut pairs = Vec::with_capacity(len.min(reader.remaining()));
        for _ in 0..len {
            let name = numbered.read(&mut reader)?;
            // Short text, the commonest value, on a path of its own: a value merged from every
            // kind's path is passed through the stack in pieces (see `copy_text`), a stall.
            if let Some(short) = reader.short_text() {
                pairs.push((copy_text(name), AttrValue::Str(text(short))));
                continue;
            }
            let value = reader.value()?;
            pairs.push((copy_text(name), value));
        }
        let event = Event {
            tenant,
            event_type,
            ts_ms,
            id,
            attrs: Attrs::from_pairs(pairs),
        };
        events.push(Some((event, arrival)));
    }
    reader.is_empty().then_some(events)
}

/// A share's events, and their block of bytes once made. Timely asks a message crossing to
/// another process for its length and then for its bytes, each a serialization of the whole
/// message: the block is made by the first, unless the share was sealed before it was sent,
/// and kept for the second. Changing the events lets go of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShareEvents {
    slots: Vec<EventSlot>,
    block: OnceCell<Vec<u8>>,
}

impl ShareEvents {
    /// A share of `slots` (an emptied buffer, to fill).
    pub(crate) fn new(slots: Vec<EventSlot>) -> ShareEvents {
        ShareEvents {
            slots,
            block: OnceCell::new(),
        }
    }

    /// Adds an event.
    pub(crate) fn push(&mut self, slot: EventSlot) {
        self.block.take();
        self.slots.push(slot);
    }

    /// Adds `other`'s events after these.
    pub(crate) fn append(&mut self, other: ShareEvents) {
        self.block.take();
        self.slots.extend(other.slots);
    }

    /// The events.
    pub(crate) fn into_slots(self) -> Vec<EventSlot> {
        self.slots
    }

    /// Makes the block now, for a share bound for another process, whose events are only ever
    /// read to be sent: each is dropped as soon as it is written, while it is still in cache,
    /// instead of read once more to be dropped after the whole share. Only the block is left,
    /// so nothing may be added after.
    pub(crate) fn seal(&mut self) {
        let block = encode_taking(&mut self.slots);
        self.slots.clear();
        self.block = OnceCell::from(block);
    }
}

impl Serialize for ShareEvents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let block = self.block.get_or_init(|| encode(&self.slots));
        serializer.serialize_bytes(block)
    }
}

impl<'de> Deserialize<'de> for ShareEvents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ShareEvents, D::Error> {
        struct Block;
        impl<'de> Visitor<'de> for Block {
            type Value = Vec<EventSlot>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a block of encoded events")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
                decode(bytes).ok_or_else(|| E::custom("a share's events do not decode"))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                decode(&bytes).ok_or_else(|| A::Error::custom("a share's events do not decode"))
            }
        }
        deserializer.deserialize_bytes(Block).map(ShareEvents::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::EpochInput;
    use serde_json::json;

    fn event(tenant: &str, n: usize, attrs: serde_json::Value) -> Event {
        Event::from_json(
            &json!({"id": format!("e-{n}"), "type": "order", "ts": 1_764_028_800_000_i64 + n as i64, "attrs": attrs}),
            tenant,
        )
        .unwrap()
    }

    /// An epoch's share, as timely sends it to another process.
    fn sent(events: Vec<EventSlot>) -> Vec<u8> {
        let share = EpochInput {
            epoch: 7,
            target: 1,
            events: ShareEvents::new(events),
            ..Default::default()
        };
        // Timely measures a message before it writes it: the block is made once for both.
        let size = bincode::serialized_size(&share).unwrap();
        assert!(share.events.block.get().is_some());
        let bytes = bincode::serialize(&share).unwrap();
        assert_eq!(bytes.len() as u64, size);
        bytes
    }

    fn received(bytes: &[u8]) -> Result<Vec<EventSlot>, bincode::Error> {
        bincode::deserialize::<EpochInput>(bytes).map(|share| share.events.into_slots())
    }

    #[test]
    fn a_share_crosses_with_every_event_exactly() {
        let mut events: Vec<EventSlot> = (0..50)
            .map(|n| {
                let channel = ["naver", "kakao"][n % 2];
                let attrs = json!({"amount": n as f64 * 1.5, "neg": -0.0, "channel": channel,
                    "none": null, "yes": true, "no": false, "tags": ["vip", 3, [null, "naver"]], "empty": "",
                    "유니코드": "값", "long": "x".repeat(300 + n), "order": format!("o-{n}"),
                    "an_attribute_name_longer_than_inline": n});
                let arrival = [Arrival::OnTime, Arrival::Late, Arrival::History][n % 3];
                let tenant = ["shop", "mall", "a-tenant-named-past-the-inline-length"][n % 3];
                Some((event(tenant, n, attrs), arrival))
            })
            .collect();
        events.insert(3, None);
        events.push(Some((event("shop", 99, json!({})), Arrival::OnTime)));
        let crossed = received(&sent(events.clone())).unwrap();
        assert_eq!(crossed, events);
        assert_eq!(received(&sent(Vec::new())).unwrap(), Vec::new());
    }

    /// A share sealed for another process (encoded at once, its events dropped as they are
    /// written) sends the bytes it would have sent unsealed, and keeps no events of its own.
    #[test]
    fn a_sealed_share_sends_the_same_bytes() {
        let mut events: Vec<EventSlot> = (0..40)
            .map(|n| {
                let channel = ["naver", "kakao"][n % 2];
                let attrs = json!({"amount": n, "channel": channel,
                    "a_name_past_sixteen_bytes": format!("v-{n}")});
                let tenant = ["shop", "a-tenant-named-past-the-inline-length"][n % 2];
                Some((event(tenant, n, attrs), Arrival::OnTime))
            })
            .collect();
        events.insert(5, None);
        let mut share = EpochInput {
            epoch: 7,
            target: 1,
            events: ShareEvents::new(events.clone()),
            ..Default::default()
        };
        share.events.seal();
        assert!(share.events.slots.is_empty());
        let bytes = bincode::serialize(&share).unwrap();
        assert_eq!(bytes, sent(events.clone()));
        assert_eq!(received(&bytes).unwrap(), events);
    }

    #[test]
    fn more_distinct_texts_than_are_numbered_still_cross_exactly() {
        // Every event names an attribute of its own, so the table fills up (its last number
        // goes to `name-65532`, after `shop`, `order` and `channel`); the last events have
        // tenants of their own, which come after the table is full, and name again the last
        // names numbered and the first ones past the table.
        let events: Vec<EventSlot> = (0..MAX_NUMBERED + 500)
            .map(|n| {
                let (tenant, name) = if n < MAX_NUMBERED {
                    ("shop".to_string(), n)
                } else {
                    (format!("late-{n}"), MAX_NUMBERED - 4 + n % 4)
                };
                let attrs = json!({format!("name-{name}"): n, "channel": "naver"});
                Some((event(&tenant, n, attrs), Arrival::OnTime))
            })
            .collect();
        assert_eq!(received(&sent(events.clone())).unwrap(), events);
    }

    #[test]
    fn texts_seen_before_are_named_by_number_and_the_share_is_small() {
        let events: Vec<EventSlot> = (0..1_000)
            .map(|n| {
                let attrs = json!({"amount": n, "channel": "naver", "country": "KR", "sku": format!("SKU-{}", n % 20)});
                Some((event("shop-with-a-long-name", n, attrs), Arrival::OnTime))
            })
            .collect();
        let compact = sent(events.clone()).len();
        let plain = bincode::serialize(&events).unwrap().len();
        assert!(
            compact * 3 < plain,
            "{compact} bytes against {plain} in serde's own form"
        );
    }

    #[test]
    fn bytes_that_end_early_or_run_on_are_an_error_not_a_panic() {
        let events: Vec<EventSlot> = (0..20)
            .map(|n| {
                Some((
                    event("shop", n, json!({"tags": ["a", 1], "n": n})),
                    Arrival::OnTime,
                ))
            })
            .collect();
        let block = encode(&events);
        for cut in 0..block.len() {
            assert!(decode(&block[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = block.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        // A text named by a number never given, an unknown arrival, an unknown value tag.
        assert!(decode(&[1, ON_TIME, 4]).is_none());
        assert!(decode(&[1, 9]).is_none());
        let mut bad_tag = encode(&[Some((event("s", 1, json!({"a": 1})), Arrival::OnTime))]);
        let at = bad_tag.len() - 9;
        bad_tag[at] = 77;
        assert!(decode(&bad_tag).is_none());
        // Through serde, the error says what failed.
        let mut bytes = sent(events);
        bytes.truncate(bytes.len() - 3);
        assert!(received(&bytes).is_err());
    }
}
