//! The forward bit stream of zstd's entropy coders.
//!
//! Bits are appended least-significant first; [`BitWriter::finish`] appends
//! the end mark (a single 1 bit) and pads to a byte. zstd decoders read such a
//! stream backwards from the end mark, so the last bits written are the first
//! read.

/// Appends bit fields to a byte vector.
#[derive(Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    container: u64,
    filled: u32,
}

impl BitWriter {
    /// An empty stream with room for about `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        BitWriter {
            bytes: Vec::with_capacity(capacity),
            container: 0,
            filled: 0,
        }
    }

    /// Appends the low `count` bits of `value` (`count` ≤ 32).
    #[inline]
    pub fn write(&mut self, value: u64, count: u32) {
        debug_assert!(count <= 32);
        debug_assert!(count == 32 || value >> count == 0);
        self.container |= value << self.filled;
        self.filled += count;
        if self.filled >= 32 {
            self.bytes
                .extend_from_slice(&(self.container as u32).to_le_bytes());
            self.container >>= 32;
            self.filled -= 32;
        }
    }

    /// Bits written so far.
    pub fn bit_len(&self) -> usize {
        self.bytes.len() * 8 + self.filled as usize
    }

    /// Appends the end mark and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.write(1, 1);
        while self.filled > 0 {
            self.bytes.push(self.container as u8);
            self.container >>= 8;
            self.filled = self.filled.saturating_sub(8);
        }
        self.bytes
    }

    /// Returns the bytes without an end mark, the last byte zero-padded (the
    /// forward bit order of FSE table descriptions).
    pub fn finish_unmarked(mut self) -> Vec<u8> {
        while self.filled > 0 {
            self.bytes.push(self.container as u8);
            self.container >>= 8;
            self.filled = self.filled.saturating_sub(8);
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_packed_least_significant_first() {
        let mut w = BitWriter::default();
        w.write(0b101, 3);
        w.write(0b11, 2);
        assert_eq!(w.bit_len(), 5);
        // 101 then 11, then the end mark at bit 5.
        assert_eq!(w.finish(), vec![0b0011_1101]);
        let mut w = BitWriter::default();
        w.write(0xFFFF_FFFF, 32);
        w.write(0x1, 1);
        assert_eq!(w.finish(), vec![0xFF, 0xFF, 0xFF, 0xFF, 0b11]);
    }
}
