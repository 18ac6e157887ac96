//! Kafka's partitioner for keyed records, which the model and the rdkafka writer share so
//! that both place a key in the same partition. The hash itself lives in
//! `weir_core::routing`, where the workers' shuffles use it too.

pub use weir_core::routing::murmur2;

/// Kafka's default partitioner for keyed records (Java's `BuiltInPartitioner` and
/// librdkafka's `murmur2_random`): `(murmur2(key) & 0x7fffffff) % partition_count`. The
/// model uses it, so a real producer configured with `partitioner=murmur2_random` places
/// keys in the same partitions.
///
/// # Panics
/// If `partition_count` is 0.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> i32 {
    weir_core::routing::partition_for_key(key, partition_count) as i32
}
