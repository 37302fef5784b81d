//! Binary encoding of revision records, and the small byte reader/writer that the snapshot image
//! shares with it.
//!
//! A record is `format u8 | flags u8 | create i64 | mod i64 | version i64 | lease i64 |
//! key (u64 length + bytes) | value (u64 length + bytes) | crc32 u32`, integers big-endian,
//! the CRC-32 covering every byte before it.

use detcd_proto::mvccpb::KeyValue;

/// Format byte of a record.
const RECORD_FORMAT: u8 = 1;
/// Flag bit: the record is a tombstone (the key was deleted at this revision).
const FLAG_TOMBSTONE: u8 = 1;
/// Bytes of a record that does not depend on its key and value: format, flags, four i64, two
/// lengths and the checksum.
const RECORD_FIXED_BYTES: usize = 1 + 1 + 4 * 8 + 2 * 8 + 4;

/// One version of one key, as stored under its revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub tombstone: bool,
}

impl Record {
    /// The tombstone ending a key's generation at `mod_revision`.
    pub fn tombstone(key: &[u8], mod_revision: i64) -> Record {
        Record {
            key: key.to_vec(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision,
            version: 0,
            lease: 0,
            tombstone: true,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = ByteWriter::with_capacity(RECORD_FIXED_BYTES + self.key.len() + self.value.len());
        w.u8(RECORD_FORMAT);
        w.u8(if self.tombstone { FLAG_TOMBSTONE } else { 0 });
        w.i64(self.create_revision);
        w.i64(self.mod_revision);
        w.i64(self.version);
        w.i64(self.lease);
        w.bytes(&self.key);
        w.bytes(&self.value);
        w.finish_with_crc()
    }

    /// Decodes and verifies a record; the error says what is wrong, the caller says where.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let mut r = ByteReader::with_crc(bytes)?;
        let format = r.u8()?;
        if format != RECORD_FORMAT {
            return Err(format!("unknown record format {format}"));
        }
        let flags = r.u8()?;
        if flags & !FLAG_TOMBSTONE != 0 {
            return Err(format!("unknown record flags {flags:#x}"));
        }
        let record = Record {
            create_revision: r.i64()?,
            mod_revision: r.i64()?,
            version: r.i64()?,
            lease: r.i64()?,
            key: r.bytes()?.to_vec(),
            value: r.bytes()?.to_vec(),
            tombstone: flags & FLAG_TOMBSTONE != 0,
        };
        r.finish()?;
        Ok(record)
    }

    pub fn into_kv(self) -> KeyValue {
        debug_assert!(!self.tombstone, "a tombstone is never returned as a key-value");
        KeyValue {
            key: self.key,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value,
            lease: self.lease,
        }
    }
}

/// Appends big-endian integers and length-prefixed byte strings.
pub(super) struct ByteWriter {
    buf: Vec<u8>,
}

impl ByteWriter {
    pub fn with_capacity(bytes: usize) -> ByteWriter {
        ByteWriter { buf: Vec::with_capacity(bytes) }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    pub fn bytes(&mut self, v: &[u8]) {
        // usize -> u64 never truncates on the platforms we build for.
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// Appends the CRC-32 of everything written so far and returns the buffer.
    pub fn finish_with_crc(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf);
        self.u32(crc);
        self.buf
    }
}

/// Reads what [`ByteWriter`] wrote; every read is bounds-checked, so truncated or garbage input
/// yields an error, never a panic.
pub(super) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    /// Verifies the trailing CRC-32 and reads the bytes before it.
    pub fn with_crc(bytes: &'a [u8]) -> Result<ByteReader<'a>, String> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or_else(|| format!("{} bytes is too short to hold a checksum", bytes.len()))?;
        let (body, crc) = bytes.split_at(body_len);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual = crc32fast::hash(body);
        if stored != actual {
            return Err(format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"));
        }
        Ok(ByteReader { buf: body, pos: 0 })
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len()).ok_or_else(|| {
            format!("truncated: want {n} bytes at offset {}, have {}", self.pos, self.buf.len() - self.pos)
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_be_bytes)
    }

    pub fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_be_bytes)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let at = self.pos;
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| format!("length {len} at offset {at} is too large"))?;
        self.take(len)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), String> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes at offset {}", self.buf.len() - self.pos, self.pos))
        }
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    fn sample() -> Record {
        Record {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            lease: 7,
            tombstone: false,
        }
    }

    #[test]
    fn record_round_trips() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()), Ok(r));
        let t = Record::tombstone(b"k", 9);
        assert_eq!(Record::decode(&t.encode()), Ok(t));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(Record::decode(&b).is_err(), "bit {i} flip not detected");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n]).is_err(), "truncation to {n} not detected");
        }
    }
}
