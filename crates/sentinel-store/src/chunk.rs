//! Compressed sample chunks in the style of the Gorilla paper: timestamps as
//! delta-of-delta in variable-width buckets, values as the XOR with the previous value
//! (leading/trailing zero counts reused while they fit). Values are kept bit for bit, so
//! Prometheus's stale marker (a special NaN) and every other NaN payload round-trip.
//!
//! Layout of one chunk's bits (the sample count is kept beside the bytes, not inside):
//! - sample 1: timestamp (64 bits, two's complement), value (64 raw bits);
//! - later samples: delta-of-delta of the timestamp (the delta before sample 2 counts as
//!   0): `0` for 0, `10` + 14 bits, `110` + 17 bits, `1110` + 20 bits, `1111` + 64 bits
//!   (signed); then the value: `0` when equal to the previous one, else `1`, then `0` +
//!   the meaningful bits when they fit the previous leading/trailing window, or `1` + 5
//!   bits leading zeros + 6 bits meaningful-bit count (64 written as 0) + those bits.

/// Samples per chunk before a new one is cut (as Prometheus's head does).
pub const SAMPLES_PER_CHUNK: u16 = 120;

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = last byte full or no byte).
    used: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Writes the low `n` bits of `v`, most significant first.
    fn write_bits(&mut self, v: u64, n: u8) {
        let mut n = n;
        while n > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(n);
            let chunk = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            n -= take;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// One bit (the tests' reference reader; decoding reads words).
    #[cfg(test)]
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    /// The next `n` bits (at most 64), most significant first; None when the bytes end
    /// before them. Reads whole bytes at a time: one 64-bit load for up to 57 bits.
    fn read_bits(&mut self, n: u8) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if n > 56 {
            let hi = self.read_bits(n - 32)?;
            let lo = self.read_bits(32)?;
            return Some((hi << 32) | lo);
        }
        let end = self.pos.checked_add(n as usize)?;
        if end > self.bytes.len() * 8 {
            return None;
        }
        let v = self.peek(n);
        self.pos = end;
        Some(v)
    }

    /// The next `n` bits (1 to 56), all of which exist, without consuming them.
    fn peek(&self, n: u8) -> u64 {
        let i = self.pos / 8;
        let word = match self.bytes.get(i..i + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut b = [0u8; 8];
                let tail = &self.bytes[i..];
                b[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(b)
            }
        };
        // `pos % 8 + n <= 63`: the bits lie within the word.
        (word << (self.pos % 8)) >> (64 - n as u32)
    }

    /// Reads one bits up to `max` (at most 8) and the zero bit that ends them when fewer:
    /// the count, as reading bit by bit while a bit is one and the count is below `max`
    /// gives; None when the bytes end first.
    fn read_ones(&mut self, max: u8) -> Option<u8> {
        let left = (self.bytes.len() * 8).saturating_sub(self.pos);
        let n = (max as usize + 1).min(left) as u8;
        if n == 0 {
            return None;
        }
        let ones = ((self.peek(n) << (64 - n as u32)).leading_ones() as u8).min(n);
        if ones >= max {
            self.pos += max as usize;
            return Some(max);
        }
        if ones == n {
            return None;
        }
        self.pos += ones as usize + 1;
        Some(ones)
    }
}

/// Builds one chunk sample by sample.
#[derive(Debug, Clone, Default)]
pub struct ChunkBuilder {
    w: BitWriter,
    n: u16,
    mint: i64,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

impl ChunkBuilder {
    pub fn len(&self) -> u16 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn mint(&self) -> i64 {
        self.mint
    }

    pub fn maxt(&self) -> i64 {
        self.t
    }

    pub fn bytes(&self) -> &[u8] {
        &self.w.bytes
    }

    /// Appends a sample; the caller keeps timestamps increasing.
    pub fn push(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        if self.n == 0 {
            self.w.write_bits(t as u64, 64);
            self.w.write_bits(bits, 64);
            self.mint = t;
            self.t = t;
            self.delta = 0;
            self.v = bits;
            self.leading = u8::MAX;
            self.n = 1;
            return;
        }
        let delta = t.wrapping_sub(self.t);
        let dod = delta.wrapping_sub(self.delta);
        let fits = |bits: u8| -> bool {
            let lim = 1i64 << (bits - 1);
            (-lim..lim).contains(&dod)
        };
        if dod == 0 {
            self.w.write_bit(false);
        } else if fits(14) {
            self.w.write_bits(0b10, 2);
            self.w.write_bits(dod as u64, 14);
        } else if fits(17) {
            self.w.write_bits(0b110, 3);
            self.w.write_bits(dod as u64, 17);
        } else if fits(20) {
            self.w.write_bits(0b1110, 4);
            self.w.write_bits(dod as u64, 20);
        } else {
            self.w.write_bits(0b1111, 4);
            self.w.write_bits(dod as u64, 64);
        }
        let x = bits ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
        } else {
            self.w.write_bit(true);
            let leading = (x.leading_zeros() as u8).min(31);
            let trailing = x.trailing_zeros() as u8;
            if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
                self.w.write_bit(false);
                let sig = 64 - self.leading - self.trailing;
                self.w.write_bits(x >> self.trailing, sig);
            } else {
                self.w.write_bit(true);
                let sig = 64 - leading - trailing;
                self.w.write_bits(leading as u64, 5);
                self.w.write_bits((sig % 64) as u64, 6);
                self.w.write_bits(x >> trailing, sig);
                self.leading = leading;
                self.trailing = trailing;
            }
        }
        self.t = t;
        self.delta = delta;
        self.v = bits;
        self.n += 1;
    }

    /// The finished chunk (the builder can keep going; this is a copy).
    pub fn to_chunk(&self) -> Chunk {
        Chunk {
            mint: self.mint,
            maxt: self.t,
            n: self.n,
            data: self.w.bytes.clone().into_boxed_slice(),
        }
    }

    /// Turns the builder into a chunk without copying.
    pub fn finish(self) -> Chunk {
        Chunk {
            mint: self.mint,
            maxt: self.t,
            n: self.n,
            data: self.w.bytes.into_boxed_slice(),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.w.bytes.capacity()
    }
}

/// A closed chunk: `n` samples in `[mint, maxt]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub mint: i64,
    pub maxt: i64,
    pub n: u16,
    pub data: Box<[u8]>,
}

impl Chunk {
    pub fn encode(samples: &[(i64, f64)]) -> Chunk {
        let mut b = ChunkBuilder::default();
        for &(t, v) in samples {
            b.push(t, v);
        }
        b.finish()
    }

    /// Every sample, or an error when the bytes end early (a corrupt chunk).
    pub fn decode(&self) -> Result<Vec<(i64, f64)>, ChunkError> {
        decode(&self.data, self.n)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError;

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("chunk data ends before its sample count")
    }
}

pub fn decode(data: &[u8], n: u16) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut it = ChunkIter::new(data, n);
    let mut out = Vec::with_capacity(n as usize);
    for s in it.by_ref() {
        out.push(s);
    }
    if it.failed {
        return Err(ChunkError);
    }
    Ok(out)
}

/// Zero bytes after a chunk's copy in [`RangeDecoder`]'s scratch: one sample reads at
/// most 145 bits past where it starts (`1111` + 64 bits, `11`, 5 + 6 + 64 bits) and each
/// read loads a whole 8-byte word, so a sample that starts inside the chunk never reads
/// past the zeros. Whether it ended inside the chunk is checked once per sample.
const READ_SLACK: usize = 32;

/// Decodes chunks into a caller's vector, the hot loop of every selection: the chunk is
/// copied beside [`READ_SLACK`] zeros first, so each read is one word load without a
/// bounds case, and truncation is checked once per sample instead of once per read.
/// Gives exactly what [`ChunkIter`] gives, filtered to a time range.
#[derive(Default)]
pub struct RangeDecoder {
    scratch: Vec<u8>,
}

impl RangeDecoder {
    /// Appends the samples of chunk `data` (`n` samples) whose time lies in
    /// `[mint, maxt]` to `out`. On data that ends before `n` samples, the samples
    /// decoded before the break stay appended and the answer is an error.
    pub fn decode_into(
        &mut self,
        data: &[u8],
        n: u16,
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, f64)>,
    ) -> Result<(), ChunkError> {
        if n == 0 {
            return Ok(());
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(data);
        self.scratch.resize(data.len() + READ_SLACK, 0);
        let bits = data.len() * 8;
        let mut r = PaddedReader {
            bytes: &self.scratch,
            pos: 0,
        };
        if bits < 128 {
            return Err(ChunkError);
        }
        let mut t = r.read64() as i64;
        let mut v = r.read64();
        let (mut delta, mut leading, mut trailing) = (0i64, 0u32, 0u32);
        out.reserve(n as usize);
        if t >= mint && t <= maxt {
            out.push((t, f64::from_bits(v)));
        }
        for _ in 1..n {
            let dod = match r.ones(4) {
                0 => 0,
                1 => sign_extend(r.read(14), 14),
                2 => sign_extend(r.read(17), 17),
                3 => sign_extend(r.read(20), 20),
                _ => r.read64() as i64,
            };
            // `0`: same value; `10`: the previous window; `11`: a new window.
            let control = r.ones(2);
            if control > 0 {
                if control == 2 {
                    leading = r.read(5) as u32;
                    let mut sig = r.read(6) as u32;
                    if sig == 0 {
                        sig = 64;
                    }
                    if leading + sig > 64 {
                        return Err(ChunkError);
                    }
                    trailing = 64 - leading - sig;
                }
                let sig = 64 - leading - trailing;
                let x = if sig > 56 {
                    let hi = r.read(sig - 32);
                    (hi << 32) | r.read(32)
                } else {
                    r.read(sig)
                };
                v ^= x << trailing;
            }
            if r.pos > bits {
                return Err(ChunkError);
            }
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
            if t >= mint && t <= maxt {
                out.push((t, f64::from_bits(v)));
            }
        }
        Ok(())
    }
}

/// Reads bits from bytes followed by at least [`READ_SLACK`] zeros; reads past the end
/// of the bytes give zeros rather than fail (the decoder checks where a sample ended).
struct PaddedReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl PaddedReader<'_> {
    /// The next `n` bits (1 to 56), consumed.
    #[inline(always)]
    fn read(&mut self, n: u32) -> u64 {
        let i = self.pos / 8;
        let word = match self.bytes.get(i..i + 8) {
            Some(b) => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => 0,
        };
        let v = (word << (self.pos % 8)) >> (64 - n);
        self.pos += n as usize;
        v
    }

    #[inline(always)]
    fn read64(&mut self) -> u64 {
        let hi = self.read(32);
        (hi << 32) | self.read(32)
    }

    /// Counts one bits up to `max` (at most 8) and consumes them with the zero bit that
    /// ends them when fewer: as [`BitReader::read_ones`] does.
    #[inline(always)]
    fn ones(&mut self, max: u32) -> u32 {
        let i = self.pos / 8;
        let word = match self.bytes.get(i..i + 8) {
            Some(b) => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => 0,
        };
        let ones = (word << (self.pos % 8)).leading_ones().min(max);
        self.pos += if ones == max { max } else { ones + 1 } as usize;
        ones
    }
}

/// Decodes a chunk's samples in order; stops (and sets `failed`) on truncated data.
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u16,
    total: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
    pub failed: bool,
}

impl<'a> ChunkIter<'a> {
    pub fn new(data: &'a [u8], n: u16) -> Self {
        ChunkIter {
            r: BitReader {
                bytes: data,
                pos: 0,
            },
            left: n,
            total: n,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
            failed: false,
        }
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        if self.left == self.total {
            self.t = self.r.read_bits(64)? as i64;
            self.v = self.r.read_bits(64)?;
            return Some((self.t, f64::from_bits(self.v)));
        }
        let ones = self.r.read_ones(4)?;
        let dod = match ones {
            0 => 0,
            1 => sign_extend(self.r.read_bits(14)?, 14),
            2 => sign_extend(self.r.read_bits(17)?, 17),
            3 => sign_extend(self.r.read_bits(20)?, 20),
            _ => self.r.read_bits(64)? as i64,
        };
        self.delta = self.delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.delta);
        // `0`: same value; `10`: the previous window; `11`: a new window.
        let control = self.r.read_ones(2)?;
        if control > 0 {
            if control == 2 {
                self.leading = self.r.read_bits(5)? as u8;
                let mut sig = self.r.read_bits(6)? as u8;
                if sig == 0 {
                    sig = 64;
                }
                if self.leading + sig > 64 {
                    return None;
                }
                self.trailing = 64 - self.leading - sig;
            }
            let sig = 64 - self.leading - self.trailing;
            let x = self.r.read_bits(sig)? << self.trailing;
            self.v ^= x;
        }
        Some((self.t, f64::from_bits(self.v)))
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 || self.failed {
            return None;
        }
        match self.step() {
            Some(s) => {
                self.left -= 1;
                Some(s)
            }
            None => {
                self.failed = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{stale_nan, STALE_NAN_BITS};
    use proptest::prelude::*;

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    #[test]
    fn bit_reader_reads_any_width_at_any_offset_as_bit_by_bit_does() {
        let bytes: Vec<u8> = (0..23u32).map(|i| (i * 97 + 13) as u8).collect();
        let bit = |p: usize| (bytes[p / 8] >> (7 - p % 8)) & 1 == 1;
        for start in 0..bytes.len() * 8 {
            for n in 0..=64u8 {
                let mut r = BitReader {
                    bytes: &bytes,
                    pos: start,
                };
                let got = r.read_bits(n);
                if start + n as usize > bytes.len() * 8 {
                    assert_eq!(got, None, "{start} {n}");
                    continue;
                }
                let want = (start..start + n as usize).fold(0u64, |v, p| (v << 1) | bit(p) as u64);
                assert_eq!(got, Some(want), "{start} {n}");
                assert_eq!(r.pos, start + n as usize);
            }
        }
    }

    #[test]
    fn bit_reader_counts_ones_as_bit_by_bit_reading_does() {
        let bytes: Vec<u8> = vec![0xff, 0xf0, 0x7b, 0xde, 0x01, 0xfe];
        for start in 0..=bytes.len() * 8 {
            for max in 1..=8u8 {
                let mut fast = BitReader {
                    bytes: &bytes,
                    pos: start,
                };
                let mut slow = BitReader {
                    bytes: &bytes,
                    pos: start,
                };
                let want = (|| {
                    let mut ones = 0;
                    while ones < max && slow.read_bit()? {
                        ones += 1;
                    }
                    Some(ones)
                })();
                assert_eq!(fast.read_ones(max), want, "{start} {max}");
                if want.is_some() {
                    assert_eq!(fast.pos, slow.pos, "{start} {max}");
                }
            }
        }
    }

    #[test]
    fn regular_samples_round_trip_and_compress() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 5000, (i % 7) as f64))
            .collect();
        let c = Chunk::encode(&samples);
        assert!(same(&c.decode().unwrap(), &samples));
        // 16 bytes for the first sample; a small integer gauge costs under 3 bytes.
        assert!(c.data.len() < 16 + 120 * 3, "{} bytes", c.data.len());
        // A constant value at a regular interval: 2 bits per sample.
        let flat: Vec<(i64, f64)> = (0..120).map(|i| (i * 5000, 42.0)).collect();
        assert!(Chunk::encode(&flat).data.len() <= 16 + 34);
    }

    #[test]
    fn stale_markers_and_nan_payloads_round_trip_bit_exactly() {
        let samples = vec![
            (1000, 1.0),
            (2000, stale_nan()),
            (3000, f64::NAN),
            (4000, stale_nan()),
            (5000, f64::INFINITY),
            (6000, -0.0),
            (7000, f64::NEG_INFINITY),
        ];
        let got = Chunk::encode(&samples).decode().unwrap();
        assert!(same(&got, &samples));
        assert_eq!(got[1].1.to_bits(), STALE_NAN_BITS);
        assert_eq!(got[3].1.to_bits(), STALE_NAN_BITS);
    }

    #[test]
    fn truncated_chunk_is_an_error_not_a_panic() {
        let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64 * 1.5)).collect();
        let c = Chunk::encode(&samples);
        for cut in 0..c.data.len() {
            assert!(decode(&c.data[..cut], c.n).is_err(), "cut at {cut}");
        }
        // Garbage never panics either.
        let _ = decode(&[0xff; 40], 100);
    }

    /// Samples from `start` on, `deltas` apart, with `values` as raw bits.
    fn increasing(start: i64, deltas: &[i64], values: &[u64]) -> Vec<(i64, f64)> {
        let mut t = start;
        let mut samples = vec![(t, f64::from_bits(values[0]))];
        for (i, d) in deltas.iter().enumerate() {
            t += d;
            samples.push((t, f64::from_bits(values[i + 1])));
        }
        samples
    }

    proptest! {
        #[test]
        fn any_increasing_series_round_trips(
            start in any::<i64>().prop_map(|t| t >> 2),
            deltas in proptest::collection::vec(1i64..1i64 << 40, 0..200),
            values in proptest::collection::vec(any::<u64>(), 201),
        ) {
            let samples = increasing(start, &deltas, &values);
            let c = Chunk::encode(&samples);
            prop_assert!(same(&c.decode().unwrap(), &samples));
        }

        #[test]
        fn arbitrary_chunk_bytes_decode_or_fail_without_panicking(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            n in any::<u16>(),
        ) {
            if let Ok(s) = decode(&data, n) {
                prop_assert_eq!(s.len(), n as usize);
            }
        }

        #[test]
        fn range_decoder_gives_what_the_iterator_gives_on_any_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            n in 0u16..200,
            mint in any::<i64>(),
            span in any::<u64>(),
        ) {
            let maxt = mint.saturating_add((span >> 1) as i64);
            let mut it = ChunkIter::new(&data, n);
            let want: Vec<(i64, f64)> = it.by_ref().filter(|(t, _)| *t >= mint && *t <= maxt).collect();
            let mut got = Vec::new();
            let r = RangeDecoder::default().decode_into(&data, n, mint, maxt, &mut got);
            prop_assert!(same(&got, &want));
            prop_assert_eq!(r.is_err(), it.failed);
        }

        #[test]
        fn range_decoder_round_trips_any_series_and_cuts_the_range(
            start in any::<i64>().prop_map(|t| t >> 2),
            deltas in proptest::collection::vec(1i64..1i64 << 40, 0..200),
            values in proptest::collection::vec(any::<u64>(), 201),
            cut in 0usize..201,
        ) {
            let samples = increasing(start, &deltas, &values);
            let c = Chunk::encode(&samples);
            let mut dec = RangeDecoder::default();
            let mut all = Vec::new();
            dec.decode_into(&c.data, c.n, i64::MIN, i64::MAX, &mut all).unwrap();
            prop_assert!(same(&all, &samples));
            let lo = samples[cut.min(samples.len() - 1)].0;
            let mut part = Vec::new();
            dec.decode_into(&c.data, c.n, lo, i64::MAX, &mut part).unwrap();
            prop_assert!(same(&part, &samples[cut.min(samples.len() - 1)..]));
            for k in 0..c.data.len() {
                prop_assert!(dec.decode_into(&c.data[..k], c.n, i64::MIN, i64::MAX, &mut Vec::new()).is_err());
            }
        }

        #[test]
        fn near_regular_series_round_trip(
            jitter in proptest::collection::vec(-3000i64..3000, 1..300),
            vals in proptest::collection::vec(prop_oneof![Just(0.0), Just(1.0), -1e6f64..1e6, Just(f64::from_bits(STALE_NAN_BITS))], 300),
        ) {
            let samples: Vec<(i64, f64)> = jitter
                .iter()
                .enumerate()
                .map(|(i, j)| (i as i64 * 10_000 + j, vals[i]))
                .collect();
            let c = Chunk::encode(&samples);
            prop_assert!(same(&c.decode().unwrap(), &samples));
        }
    }
}
