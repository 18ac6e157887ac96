//! Where a key's records go: Kafka's default partitioner for keyed records, as the Java
//! client computes it (`murmur2` of the key bytes, made positive, modulo the partition
//! count). weir routes shuffled records with it and checks a source's declared
//! `partitioned_by` with it, so a topic written by a Java producer keyed by that field is
//! trusted exactly, and weir's own producers place keyed records the same way.
//!
//! The key bytes are the key's text as UTF-8 (a string field's value as it is; a number's
//! decimal text), the same text `key_by` gives.

/// The murmur2 hash of Kafka's Java client (`Utils.murmur2`): 32-bit MurmurHash2 with the
/// seed `0x9747b28c`, little-endian 4-byte blocks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        // Java's switch falls through from the highest remaining byte down.
        for (i, byte) in rest.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `partitions` that Kafka's Java client gives a record with key `key`:
/// `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed with `org.apache.kafka.common.utils.Utils.murmur2` and `toPositive(h) % n`
    /// of kafka-clients 4.3.1 (the first six are also the vectors of Kafka's own tests).
    const JAVA_VECTORS: [(&str, i32, u32, u32); 10] = [
        ("21", -973932308, 0, 0),
        ("foobar", -790332482, 0, 2),
        ("a-little-bit-long-string", -985981536, 2, 0),
        ("a-little-bit-longer-string", -1486304829, 5, 3),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
            5,
            1,
        ),
        ("abc", 479470107, 3, 3),
        ("", 275646681, 3, 1),
        ("card-17", 172860406, 4, 2),
        ("4111111111111111", 1202103843, 3, 3),
        ("ü€", 1453868851, 1, 3),
    ];

    #[test]
    fn murmur2_and_partitions_agree_with_the_java_client() {
        for (key, hash, of_six, of_four) in JAVA_VECTORS {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key:?}");
            assert_eq!(partition_for_key(key.as_bytes(), 6), of_six, "{key:?}");
            assert_eq!(partition_for_key(key.as_bytes(), 4), of_four, "{key:?}");
        }
    }

    #[test]
    fn every_key_lands_inside_the_topic() {
        for n in 1..=7u32 {
            for i in 0..200u32 {
                assert!(partition_for_key(format!("k{i}").as_bytes(), n) < n);
            }
        }
    }
}
