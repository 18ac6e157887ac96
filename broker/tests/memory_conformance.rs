//! The broker conformance suite against the in-memory model: the simulation trusts the
//! model only as far as it passes the same cases as a real Kafka broker.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use weir_broker::memory::MemoryBroker;
use weir_broker_conformance::{self as conformance, ConformanceFailure};

#[tokio::test]
async fn the_whole_suite_passes_on_one_shared_cluster() -> Result<(), ConformanceFailure> {
    // One cluster for every case: the cases' own names must keep them apart.
    conformance::run_all(&MemoryBroker::new(), "memory-suite").await
}

#[tokio::test]
async fn the_suite_passes_twice_with_different_prefixes() -> Result<(), ConformanceFailure> {
    let broker = MemoryBroker::new();
    conformance::run_all(&broker, "first").await?;
    conformance::run_all(&broker, "second").await
}

/// One test per case, so a failure names its case.
macro_rules! case_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() -> Result<(), ConformanceFailure> {
                conformance::$case(&MemoryBroker::new(), stringify!($case)).await
            }
        )*
    };
}

case_tests!(
    committed_records_are_read_in_order,
    aborted_records_are_never_read,
    open_transaction_is_hidden_until_commit,
    open_transaction_holds_back_later_commits,
    group_offsets_commit_with_the_data,
    new_writer_fences_the_previous_one,
    reader_resumes_at_any_offset,
    consume_transform_produce_resumes_exactly,
    topics_report_their_partition_count,
    unknown_topics_and_partitions_are_errors,
    keyed_records_stay_in_one_partition,
    owned_topics_are_created_with_their_settings,
    existing_topics_with_other_settings_are_refused,
    invalid_topic_specs_are_refused,
    topics_are_deleted_idempotently,
);
