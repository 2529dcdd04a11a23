//! Events held for windows: their attributes packed side by side in large segments, and when
//! each retires.
//!
//! A retained event is only read again if a windowed rule of its (tenant, type) changes (its
//! windows are recounted) or a rule with longer windows than it was retained for must forget it.
//! Packing it keeps the worker's memory small and lets the original be dropped while it is still
//! in cache.

use std::collections::{BTreeMap, VecDeque};

use crate::codec::{Reader, put_len, put_text, put_value};
use crate::value::Attrs;

/// A retained event: its time, and where its packed attributes are in [`PackedEvents`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedEvent {
    pub(crate) ts_ms: i64,
    segment: u32,
    start: u32,
    len: u32,
}

/// Bytes of a segment: events are packed one after another into segments this large.
const SEGMENT_BYTES: usize = 64 << 10;

/// Emptied segments kept with their memory for re-use; past this many, the memory goes.
const SPARE_SEGMENTS: usize = 64;

/// One segment: packed events side by side, and how many of them are still retained.
#[derive(Debug, Default)]
struct Segment {
    bytes: Vec<u8>,
    live: u32,
}

/// The packed attributes of every retained event of a worker, written one after another into
/// large segments rather than allocated one by one: packing an event is a copy to the end of a
/// segment, and a segment is emptied for re-use once all its events have retired. Events are
/// packed grouped by (tenant, type), and the events of one (tenant, type) retire at about the
/// same time, so segments empty promptly.
#[derive(Debug, Default)]
pub(crate) struct PackedEvents {
    segments: Vec<Segment>,
    /// Empty segments, for re-use.
    empty: Vec<u32>,
    /// The segment being written.
    filling: Option<u32>,
    /// Where an event is packed before it is copied into its segment.
    scratch: Vec<u8>,
}

impl PackedEvents {
    /// Packs an event's time and attributes.
    pub(crate) fn pack(&mut self, ts_ms: i64, attrs: &Attrs) -> PackedEvent {
        let scratch = &mut self.scratch;
        scratch.clear();
        put_len(scratch, attrs.len());
        for (key, value) in attrs {
            put_text(scratch, key);
            put_value(scratch, value);
        }
        let len = scratch.len();
        let fits = |segment: &Segment| segment.bytes.capacity() - segment.bytes.len() >= len;
        let segment = match self.filling {
            Some(at) if fits(&self.segments[at as usize]) => at,
            filling => {
                if let Some(at) = filling
                    && self.segments[at as usize].live == 0
                {
                    self.empty_out(at);
                }
                let at = self.empty.pop().unwrap_or_else(|| {
                    self.segments.push(Segment::default());
                    (self.segments.len() - 1) as u32
                });
                self.segments[at as usize]
                    .bytes
                    .reserve(SEGMENT_BYTES.max(len));
                self.filling = Some(at);
                at
            }
        };
        let target = &mut self.segments[segment as usize];
        let start = target.bytes.len() as u32;
        target.bytes.extend_from_slice(&self.scratch);
        target.live += 1;
        PackedEvent {
            ts_ms,
            segment,
            start,
            len: len as u32,
        }
    }

    /// The attributes of a retained event, unpacked.
    pub(crate) fn attrs(&self, event: &PackedEvent) -> Attrs {
        let bytes = self
            .segments
            .get(event.segment as usize)
            .and_then(|s| {
                s.bytes
                    .get(event.start as usize..(event.start + event.len) as usize)
            })
            .unwrap_or(&[]);
        // The bytes never left the process, so they are well formed; a short read still ends
        // the walk rather than panicking.
        let mut reader = Reader::new(bytes);
        let len = reader.len().unwrap_or(0);
        (0..len)
            .map_while(|_| Some((reader.text()?, reader.value()?)))
            .collect()
    }

    /// Lets go of a retained event's packed attributes.
    pub(crate) fn release(&mut self, event: &PackedEvent) {
        let Some(segment) = self.segments.get_mut(event.segment as usize) else {
            return;
        };
        segment.live = segment.live.saturating_sub(1);
        if segment.live == 0 && self.filling != Some(event.segment) {
            self.empty_out(event.segment);
        }
    }

    fn empty_out(&mut self, at: u32) {
        let segment = &mut self.segments[at as usize];
        if self.empty.len() < SPARE_SEGMENTS {
            segment.bytes.clear();
        } else {
            segment.bytes = Vec::new();
        }
        self.empty.push(at);
    }

    /// Bytes held by segments, for tests.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.segments.iter().map(|s| s.bytes.capacity()).sum()
    }
}

/// Width of a retirement bucket.
const BUCKET_MS: i64 = 1_000;

/// Buckets the queue reaches by position (36 hours of 1-second buckets); items retiring
/// outside that reach wait in an ordered map.
const RING_BUCKETS: usize = 1 << 17;

/// Emptied buckets kept with their memory for re-use.
const SPARE_BUCKETS: usize = 64;

/// When retained events retire: a queue bucketed by the second, since they arrive roughly in
/// order and the order within a retirement does not matter. The buckets of a 36-hour span sit
/// in a ring found by position, so an event's bucket is a subtraction away rather than a search,
/// and emptied buckets are re-used with their memory.
#[derive(Debug)]
pub(crate) struct RetireQueue<T> {
    /// Buckets by position: `ring[i]` is bucket `first + i`.
    ring: VecDeque<Vec<(i64, T)>>,
    first: i64,
    /// Buckets outside the ring's reach, by bucket.
    far: BTreeMap<i64, Vec<(i64, T)>>,
    len: usize,
    spare: Vec<Vec<(i64, T)>>,
}

impl<T> Default for RetireQueue<T> {
    fn default() -> Self {
        RetireQueue {
            ring: VecDeque::new(),
            first: 0,
            far: BTreeMap::new(),
            len: 0,
            spare: Vec::new(),
        }
    }
}

impl<T> RetireQueue<T> {
    /// Schedules `item` to retire once the watermark reaches `at`.
    pub(crate) fn push(&mut self, at: i64, item: T) {
        self.len += 1;
        let bucket = at.div_euclid(BUCKET_MS);
        if self.ring.is_empty() {
            self.first = bucket;
        }
        let Some(offset) = self.ring_offset(bucket) else {
            self.far.entry(bucket).or_default().push((at, item));
            return;
        };
        if offset >= self.ring.len() {
            self.ring.resize_with(offset + 1, Vec::new);
        }
        let items = &mut self.ring[offset];
        if items.capacity() == 0
            && let Some(spare) = self.spare.pop()
        {
            *items = spare;
        }
        items.push((at, item));
    }

    /// Where `bucket` is in the ring, growing it toward earlier buckets if need be; `None`
    /// outside its reach.
    fn ring_offset(&mut self, bucket: i64) -> Option<usize> {
        let offset = bucket.checked_sub(self.first)?;
        if offset >= 0 {
            return usize::try_from(offset).ok().filter(|o| *o < RING_BUCKETS);
        }
        let before = usize::try_from(offset.checked_neg()?).ok()?;
        if self.ring.len() + before > RING_BUCKETS {
            return None;
        }
        for _ in 0..before {
            self.ring.push_front(Vec::new());
        }
        self.first = bucket;
        Some(0)
    }

    /// Scheduled items.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every scheduled item, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.ring
            .iter()
            .chain(self.far.values())
            .flatten()
            .map(|(_, item)| item)
    }

    /// Moves every item due by `watermark` into `out`.
    pub(crate) fn take_due(&mut self, watermark: i64, out: &mut Vec<T>) {
        loop {
            let near = (!self.ring.is_empty()).then_some(self.first);
            let far = self.far.first_key_value().map(|(bucket, _)| *bucket);
            let Some(bucket) = near.into_iter().chain(far).min() else {
                break;
            };
            if bucket.saturating_mul(BUCKET_MS) > watermark {
                break;
            }
            let whole =
                bucket.saturating_add(1).saturating_mul(BUCKET_MS) <= watermark.saturating_add(1);
            if !whole {
                // The bucket the watermark falls in (in the ring, the map or both): only part of
                // it is due, and every later bucket starts after the watermark.
                let mut taken = 0;
                let mut take = |items: &mut Vec<(i64, T)>| {
                    let before = items.len();
                    out.extend(
                        items
                            .extract_if(.., |(at, _)| *at <= watermark)
                            .map(|(_, item)| item),
                    );
                    taken += before - items.len();
                };
                if near == Some(bucket)
                    && let Some(items) = self.ring.front_mut()
                {
                    take(items);
                }
                if far == Some(bucket)
                    && let Some(mut entry) = self.far.first_entry()
                {
                    take(entry.get_mut());
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                }
                self.len -= taken;
                break;
            }
            let mut items = if near == Some(bucket) {
                self.first += 1;
                self.ring.pop_front().unwrap_or_default()
            } else {
                self.far
                    .pop_first()
                    .map(|(_, items)| items)
                    .unwrap_or_default()
            };
            self.len -= items.len();
            out.extend(items.drain(..).map(|(_, item)| item));
            if items.capacity() > 0 && self.spare.len() < SPARE_BUCKETS {
                self.spare.push(items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{AttrValue, Num};
    use serde_json::json;

    #[test]
    fn packing_keeps_every_attribute_exactly() {
        let attrs: Attrs = json!({"amount": 19.99, "neg": -0.0, "channel": "naver", "none": null,
            "yes": true, "no": false, "tags": ["vip", 3, [null, "x"]], "empty": "", "유니코드": "값",
            "long": "x".repeat(300), "longer": "y".repeat(20_000)})
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.into(), AttrValue::from_json(v)))
        .collect();
        let mut store = PackedEvents::default();
        let packed = store.pack(42, &attrs);
        assert_eq!(packed.ts_ms, 42);
        assert_eq!(store.attrs(&packed), attrs);
        let empty = store.pack(1, &Attrs::new());
        assert_eq!(store.attrs(&empty), Attrs::new());
        assert_eq!(
            store.attrs(&packed),
            attrs,
            "packing another keeps the first"
        );
    }

    #[test]
    fn segments_are_reused_once_their_events_retire() {
        let attrs = |i: usize| -> Attrs {
            [
                ("amount".into(), AttrValue::Num(Num(i as f64))),
                ("sku".into(), AttrValue::Str(format!("SKU-{i:05}").into())),
            ]
            .into_iter()
            .collect()
        };
        let mut store = PackedEvents::default();
        // Ten segments' worth of events; the even ones retire, then all of the first half.
        let events: Vec<PackedEvent> = (0..20_000)
            .map(|i| store.pack(i, &attrs(i as usize)))
            .collect();
        let full = store.capacity();
        assert!(full >= 5 * SEGMENT_BYTES, "{full}");
        for event in events.iter().step_by(2) {
            store.release(event);
        }
        for (i, event) in events.iter().enumerate().skip(1).step_by(2) {
            assert_eq!(
                store.attrs(event),
                attrs(i),
                "event {i} outlives its neighbours"
            );
        }
        for event in events[..10_000].iter().skip(1).step_by(2) {
            store.release(event);
        }
        // The emptied segments (all but the one shared with the second half) take as many
        // events again: no more memory.
        let more: Vec<PackedEvent> = (0..8_000)
            .map(|i| store.pack(i, &attrs(i as usize)))
            .collect();
        assert_eq!(store.capacity(), full);
        for (i, event) in more.iter().enumerate() {
            assert_eq!(store.attrs(event), attrs(i));
        }
        for (i, event) in events.iter().enumerate().skip(10_001).step_by(2) {
            assert_eq!(store.attrs(event), attrs(i));
        }
    }

    #[test]
    fn retire_queue_releases_what_is_due() {
        let mut queue = RetireQueue::default();
        for (at, item) in [(5_500, 1), (1_000, 2), (999, 3), (2_000, 4), (-7, 5)] {
            queue.push(at, item);
        }
        let mut out = Vec::new();
        queue.take_due(1_000, &mut out);
        out.sort();
        assert_eq!(out, vec![2, 3, 5]);
        assert_eq!(queue.len(), 2);
        out.clear();
        queue.take_due(5_499, &mut out);
        assert_eq!(out, vec![4]);
        out.clear();
        queue.take_due(5_500, &mut out);
        assert_eq!(out, vec![1]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn retire_queue_keeps_far_and_early_items_in_order() {
        let day = 86_400_000;
        let mut queue = RetireQueue::default();
        // A week ahead is beyond the ring's reach; an item for an earlier second than any
        // queued still retires as soon as it is due.
        for (at, item) in [(10_000, 1), (7 * day, 2), (3 * day, 3), (2 * day, 4)] {
            queue.push(at, item);
        }
        queue.push(3_000, 5);
        assert_eq!(queue.iter().count(), 5);
        let mut out = Vec::new();
        queue.take_due(3_000, &mut out);
        assert_eq!(out, vec![5]);
        out.clear();
        queue.take_due(2 * day, &mut out);
        assert_eq!(out, vec![1, 4]);
        out.clear();
        // Pushed once the ring has moved on: lands beside what is already queued.
        queue.push(2 * day + 5, 6);
        queue.take_due(3 * day - 1, &mut out);
        assert_eq!(out, vec![6]);
        out.clear();
        queue.take_due(7 * day - 1, &mut out);
        assert_eq!(out, vec![3]);
        assert_eq!(queue.len(), 1);
        out.clear();
        queue.take_due(i64::MAX, &mut out);
        assert_eq!(out, vec![2]);
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.iter().count(), 0);
    }
}
