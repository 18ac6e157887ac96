//! Where a key lives: Kafka's Java client partitioner, `(murmur2(key) & 0x7fffffff) % n`,
//! which routes shuffled events to downstream partitions and which a source declared
//! `partitioned_by` must follow. Written here from the Java client's algorithm, not taken
//! from the broker model or the engine, so that a wrong hash there shows up as a
//! difference.

/// Kafka's murmur2 (`Utils.murmur2` of the Java client) of `data`, as Java's signed int.
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java takes the length as an int; keys longer than 2 GiB do not occur.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Java's fall-through switch: the highest tail byte first, then one multiply.
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `partitions` that `key` belongs on.
///
/// # Panics
/// If `partitions` is 0: every topic has a partition.
pub fn partition_of_key(key: &[u8], partitions: u32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    (positive % partitions) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_gives_the_java_clients_test_vectors() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn a_negative_hash_loses_its_sign_bit_before_the_modulo() {
        // -790332482 & 0x7fffffff = 1357151166, which is 16 mod 50 and 1 mod 5.
        assert_eq!(partition_of_key(b"foobar", 50), 16);
        assert_eq!(partition_of_key(b"foobar", 5), 1);
        assert_eq!(partition_of_key(b"anything", 1), 0);
    }
}
