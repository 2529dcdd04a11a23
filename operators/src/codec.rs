//! Attribute values as bytes: a tag byte, then the value; lengths as LEB128. Two users share it:
//! retained events, packed into a worker's segments ([`crate::retained`]), and the events an
//! epoch's share carries to another process of a cluster ([`crate::exchange`]). Values' texts are
//! written in place; the exchange numbers the texts that repeat — tenants, types, attribute
//! names — itself.

use crate::value::{AttrValue, INLINE_TEXT, Num, SmolStr};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUM: u8 = 3;
const STR: u8 = 4;
const LIST: u8 = 5;

/// A length (or any count) as LEB128: one byte below 128, as most names and values are.
pub(crate) fn put_len(out: &mut Vec<u8>, len: usize) {
    let mut rest = len as u64;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Text written in place: its length, then its bytes.
pub(crate) fn put_text(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Writes a value.
pub(crate) fn put_value(out: &mut Vec<u8>, value: &AttrValue) {
    match value {
        AttrValue::Null => out.push(NULL),
        AttrValue::Bool(false) => out.push(FALSE),
        AttrValue::Bool(true) => out.push(TRUE),
        AttrValue::Num(n) => {
            out.push(NUM);
            out.extend_from_slice(&n.0.to_bits().to_le_bytes());
        }
        AttrValue::Str(s) => {
            out.push(STR);
            put_text(out, s);
        }
        AttrValue::List(items) => {
            out.push(LIST);
            put_len(out, items.len());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// Reads what the `put_` functions wrote, front to back. A short or malformed read is `None`,
/// never a panic.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// The next `n` bytes.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    /// The next byte.
    #[inline]
    pub(crate) fn byte(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    /// The next eight bytes, little-endian.
    #[inline]
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let mut bits = [0u8; 8];
        bits.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(bits))
    }

    /// A length written by [`put_len`].
    #[inline]
    pub(crate) fn len(&mut self) -> Option<usize> {
        let mut len: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            len |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return usize::try_from(len).ok();
            }
        }
        None
    }

    /// `len` bytes of text (bytes that are not UTF-8 are replaced, never refused).
    #[inline(always)]
    pub(crate) fn text_of(&mut self, len: usize) -> Option<SmolStr> {
        let raw = self.take(len)?;
        Some(match std::str::from_utf8(raw) {
            Ok(text) => crate::value::text(text),
            Err(_) => SmolStr::new(String::from_utf8_lossy(raw)),
        })
    }

    /// Text written by [`put_text`].
    #[inline]
    pub(crate) fn text(&mut self) -> Option<SmolStr> {
        let len = self.len()?;
        self.text_of(len)
    }

    /// The next value if it is text short enough to be held inline (its bytes, the reader past
    /// them); `None`, and nothing read, for any other value.
    #[inline(always)]
    pub(crate) fn short_text(&mut self) -> Option<&'a str> {
        let [STR, len, rest @ ..] = self.bytes else {
            return None;
        };
        let len = usize::from(*len);
        if len > INLINE_TEXT {
            return None;
        }
        let text = std::str::from_utf8(rest.get(..len)?).ok()?;
        self.bytes = &rest[len..];
        Some(text)
    }

    /// A value written by [`put_value`].
    ///
    /// The reading of values and texts is inlined into its callers: a text or value returned
    /// from a call through memory is written there in pieces and read back whole, which the CPU
    /// cannot forward from its store buffer, a stall per value. Inlined, and with texts made by
    /// [`crate::value::text`], decoding a share of `bench match`'s events took ≈ 260 ns per event
    /// instead of ≈ 390.
    #[inline(always)]
    pub(crate) fn value(&mut self) -> Option<AttrValue> {
        Some(match self.byte()? {
            NULL => AttrValue::Null,
            FALSE => AttrValue::Bool(false),
            TRUE => AttrValue::Bool(true),
            NUM => AttrValue::Num(Num(f64::from_bits(self.u64()?))),
            STR => AttrValue::Str(self.text()?),
            LIST => self.list()?,
            _ => return None,
        })
    }

    /// A list's items, after its tag (lists are rare: kept out of line).
    #[inline(never)]
    fn list(&mut self) -> Option<AttrValue> {
        let len = self.len()?;
        // Every item takes a byte at least: a count past the bytes left is malformed.
        let mut items = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            items.push(self.value()?);
        }
        Some(AttrValue::List(items.into_boxed_slice()))
    }
}
