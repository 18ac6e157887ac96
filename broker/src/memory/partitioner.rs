//! Kafka's partitioner for keyed records, which the model and the rdkafka writer share so
//! that both place a key in the same partition.

/// Kafka's default partitioner for keyed records (Java's `BuiltInPartitioner` and
/// librdkafka's `murmur2_random`): `(murmur2(key) & 0x7fffffff) % partition_count`. The
/// model uses it, so a real producer configured with `partitioner=murmur2_random` places
/// keys in the same partitions.
///
/// # Panics
/// If `partition_count` is 0.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> i32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    (positive % partition_count) as i32
}

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), as a signed
/// 32-bit value like Java's.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java xors the seed with the length as an int; keys beyond 4 GiB wrap the same way.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
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
