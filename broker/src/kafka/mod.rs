//! The production broker: the seam's traits over a real Kafka cluster, through rdkafka
//! (librdkafka, compiled from the sources bundled with `rdkafka-sys`).
//!
//! - A [`KafkaReader`] (`reader.rs`) is a consumer that never joins a group: it is
//!   assigned exactly one partition at the caller's offset, reads with
//!   `isolation.level=read_committed`, stores and commits nothing itself (offsets are
//!   committed only inside producer transactions), and keeps its prefetch queue small so
//!   memory stays bounded per partition.
//! - A [`KafkaWriter`] (`writer.rs`) is a transactional, idempotent producer for one
//!   `transactional.id`. Creating it runs `init_transactions`, which fences every older
//!   producer with the same id. `commit` adds the source offsets with
//!   `send_offsets_to_transaction` (using the metadata of a consumer created with the
//!   group's id, which never joins the group) and then commits: records and offsets become
//!   visible together, or neither does. Its delivery reports are counted by its producer
//!   context (`delivery.rs`), and its transaction is one typed state, like the in-memory
//!   writer's.
//! - A [`KafkaBroker`] (`broker.rs`) is the cluster handle: topic creation, metadata,
//!   committed offsets and topic configurations, through one shared admin client; topics
//!   weir owns are created with their settings, described and deleted in `admin.rs`.
//! - Every client setting that matters is set explicitly in `config.rs`, with the bounds
//!   it is built from; rdkafka's errors become the seam's in `classify.rs`.
//! - Partitions are chosen here, not by librdkafka's partitioner, exactly as the in-memory
//!   model chooses them: keyed records by Kafka's Java client's murmur2 partitioner
//!   ([`crate::memory::partition_for_key`]), keyless ones round-robin per writer.
//!
//! librdkafka's transactional calls, metadata requests and committed-offset lookups block
//! the calling thread for up to a network round trip (or their timeout). Partition actors
//! run on single-threaded runtimes, so those calls go to tokio's blocking pool
//! (`offload.rs`); this module is the one place in weir where that is allowed, because it
//! is the production side of the seam the simulation replaces. Record delivery and reading
//! are asynchronous already (delivery reports counted by the writer's producer context, the
//! stream consumer's wakeups).
//!
//! Transactions use Kafka's v1 transaction protocol: librdkafka does not implement KIP-890's
//! v2 and Kafka 4.x brokers still serve v1 to clients that do not ask for v2.

mod admin;
mod broker;
mod classify;
mod config;
mod delivery;
mod offload;
mod reader;
mod writer;

pub use broker::KafkaBroker;
pub use config::*;
pub use reader::KafkaReader;
pub use writer::KafkaWriter;
