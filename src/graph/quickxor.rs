//! quickXorHash, the content hash OneDrive computes for every file.
//!
//! It is the only hash Microsoft guarantees on personal and business drives
//! alike, so the uploader verifies every upload with it. The algorithm, as
//! Microsoft specifies it: a 160-bit circular register; byte `i` of the input
//! is XORed into the register at bit offset `(11 * i) mod 160`; at the end the
//! input length, as a 64-bit little-endian integer, is XORed into bytes 12..20
//! of the digest. The digest is sent base64-encoded.
//!
//! The hasher is streaming: the uploader feeds each byte exactly once, in file
//! order, as it reads fragments, so a resent fragment must not be fed again.
//!
//! Speed: the shift of byte `i` depends only on `i mod 160` (160 × 11 bits is a
//! whole number of turns of the register), and XOR is linear, so bytes 160
//! apart land in the same place. The hasher therefore XORs the input into a
//! 160-byte accumulator, which the compiler vectorises, and spreads the
//! accumulator over the register only when the digest is asked for.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Width of the register in bits.
const WIDTH_BITS: usize = 160;
/// How far each successive input byte is shifted.
const SHIFT_BITS: usize = 11;
/// After this many bytes the shifts repeat.
const PERIOD: usize = WIDTH_BITS;

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = WIDTH_BITS / 8;

/// A raw quickXorHash digest.
pub type Digest = [u8; DIGEST_LEN];

/// Streaming quickXorHash state.
#[derive(Clone, Debug)]
pub struct QuickXorHash {
    /// Slot `k` holds the XOR of every input byte whose position is `k` modulo
    /// 160.
    folded: [u8; PERIOD],
    /// Total number of bytes fed so far.
    length: u64,
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl QuickXorHash {
    /// A hasher that has seen no input.
    pub fn new() -> Self {
        Self {
            folded: [0; PERIOD],
            length: 0,
        }
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether no byte has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Feeds the next bytes of the input.
    pub fn update(&mut self, mut data: &[u8]) {
        let total = data.len() as u64;
        let mut slot = (self.length % PERIOD as u64) as usize;

        // Bring the slot back to 0 so that the bulk of the input folds in whole
        // periods.
        if slot != 0 {
            let head = data.len().min(PERIOD - slot);
            xor_into(&mut self.folded[slot..slot + head], &data[..head]);
            data = &data[head..];
            slot = (slot + head) % PERIOD;
        }
        let mut periods = data.chunks_exact(PERIOD);
        for period in &mut periods {
            xor_into(&mut self.folded, period);
        }
        let tail = periods.remainder();
        xor_into(&mut self.folded[slot..slot + tail.len()], tail);

        self.length += total;
    }

    /// The digest of everything fed so far.
    pub fn finalize(&self) -> Digest {
        // The 160-bit register as little-endian bytes, with room for a byte
        // that wraps.
        let mut register = [0u8; DIGEST_LEN];
        for (position, &byte) in self.folded.iter().enumerate() {
            let bit_offset = (position * SHIFT_BITS) % WIDTH_BITS;
            let (index, shift) = (bit_offset / 8, bit_offset % 8);
            let spread = u16::from(byte) << shift;
            register[index] ^= spread as u8;
            register[(index + 1) % DIGEST_LEN] ^= (spread >> 8) as u8;
        }
        for (slot, len_byte) in register[DIGEST_LEN - 8..]
            .iter_mut()
            .zip(self.length.to_le_bytes())
        {
            *slot ^= len_byte;
        }
        register
    }

    /// The digest of everything fed so far, base64-encoded as Graph sends it.
    pub fn finalize_base64(&self) -> String {
        to_base64(&self.finalize())
    }
}

fn xor_into(target: &mut [u8], source: &[u8]) {
    for (t, s) in target.iter_mut().zip(source) {
        *t ^= s;
    }
}

/// Encodes a digest the way Graph reports it in `file.hashes.quickXorHash`.
pub fn to_base64(digest: &Digest) -> String {
    BASE64.encode(digest)
}

/// Decodes a digest as Graph reports it; `None` when it is not 20 bytes of
/// base64.
///
/// Hashes are compared as bytes, never as strings, because Graph has been seen
/// to vary the textual form.
pub fn from_base64(text: &str) -> Option<Digest> {
    BASE64.decode(text.trim()).ok()?.try_into().ok()
}

/// The quickXorHash of a whole buffer.
pub fn digest_of(data: &[u8]) -> Digest {
    let mut hasher = QuickXorHash::new();
    hasher.update(data);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_matches_published_vector() {
        assert_eq!(to_base64(&digest_of(b"")), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    }

    #[test]
    fn single_byte_matches_published_vector() {
        assert_eq!(
            to_base64(&digest_of(&[0x4a])),
            "SgAAAAAAAAAAAAAAAQAAAAAAAAA="
        );
    }

    #[test]
    fn streaming_in_any_split_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = digest_of(&data);
        for split in [1, 7, 19, 20, 64, 160, 4096] {
            let mut hasher = QuickXorHash::new();
            for chunk in data.chunks(split) {
                hasher.update(chunk);
            }
            assert_eq!(hasher.finalize(), whole, "split {split}");
        }
    }

    #[test]
    fn different_inputs_give_different_digests() {
        assert_ne!(digest_of(b"hello world"), digest_of(b"hello worle"));
        assert_ne!(digest_of(b"ab"), digest_of(b"ba"));
    }

    /// Input and digest pairs, both base64, published with rclone's
    /// quickxorhash tests (backend/onedrive/quickxorhash); they cover inputs
    /// shorter than, equal to and longer than the 20-byte register.
    const PUBLISHED_VECTORS: [(&str, &str); 6] = [
        ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
        ("0pZP", "0rDEEwAAAAAAAAAAAwAAAAAAAAA="),
        ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
        (
            "T6LYJIfDh81JrAK309H2JMJTXis=",
            "zBTHrspn3mEcohlJdIUAbjGNaNg=",
        ),
        (
            "DWAAX5/CIfrmErgZa8ot6ZraeSbu",
            "LR2Z0PjuRYGKQB/mhQAuMrAGZbQ=",
        ),
        (
            "Mb7EGva2rEE5fENDL85P+BsapHEEjv2/siVhKjvAQe02feExVOQSkfmuYzU/kTF1MaKjPmKF\
             /w+cbvwfdWL8aQ==",
            "n1anP5NfvD4XDYWIeRPW3ZkPv1Y=",
        ),
    ];

    #[test]
    fn matches_published_vectors_in_one_shot_and_byte_by_byte() {
        for (input, expected) in PUBLISHED_VECTORS {
            let data = BASE64.decode(input).expect("vector input is base64");
            assert_eq!(to_base64(&digest_of(&data)), expected, "input {input}");
            let mut hasher = QuickXorHash::new();
            for byte in &data {
                hasher.update(std::slice::from_ref(byte));
            }
            assert_eq!(
                hasher.finalize_base64(),
                expected,
                "input {input}, bytewise"
            );
        }
    }

    /// The algorithm as specified, one bit at a time: slow, but obviously
    /// right.
    fn digest_bit_by_bit(data: &[u8]) -> Digest {
        let mut register = [false; WIDTH_BITS];
        for (i, byte) in data.iter().enumerate() {
            for bit in 0..8 {
                if byte >> bit & 1 == 1 {
                    let at = (i * SHIFT_BITS + bit) % WIDTH_BITS;
                    register[at] = !register[at];
                }
            }
        }
        let mut digest = [0u8; DIGEST_LEN];
        for (at, set) in register.iter().enumerate() {
            digest[at / 8] |= u8::from(*set) << (at % 8);
        }
        for (slot, len_byte) in digest[12..]
            .iter_mut()
            .zip((data.len() as u64).to_le_bytes())
        {
            *slot ^= len_byte;
        }
        digest
    }

    #[test]
    fn folded_hash_equals_the_specification_for_every_length_around_the_period() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in (0..=481).chain([999, 1000]) {
            assert_eq!(
                digest_of(&data[..len]),
                digest_bit_by_bit(&data[..len]),
                "length {len}"
            );
        }
    }

    #[test]
    fn base64_round_trips_and_rejects_wrong_length() {
        let digest = digest_of(b"some bytes");
        assert_eq!(from_base64(&to_base64(&digest)), Some(digest));
        assert_eq!(from_base64("AAAA"), None);
        assert_eq!(from_base64("not base64!"), None);
    }
}
