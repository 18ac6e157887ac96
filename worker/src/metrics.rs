//! The worker's metrics, described once so a worker's `/metrics` carries a `# HELP` line and
//! a unit for each (the names are recorded where the work happens: the runner, the output
//! writer, the partition actor, the supervisor, the local copy).

/// Describes every metric a worker records. Called once the process's recorder is
/// installed (`weir worker --metrics-listen`).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "weir_records_in_total",
        "Source records processed, by job and partition."
    );
    describe_counter!(
        "weir_records_out_total",
        "Results written into the sink's open transaction, by job and partition."
    );
    describe_counter!(
        "weir_dead_letters_total",
        "Dead letters written into the open transaction, by job and partition."
    );
    describe_counter!(
        "weir_partition_failures_total",
        "Times a partition failed and recovered, by job, partition and reason."
    );
    describe_counter!(
        "weir_local_copy_failures_total",
        "Checkpoints whose write to the worker's local state copy failed (the checkpoint store still has them)."
    );
    describe_gauge!(
        "weir_partition_failing",
        "1 while a partition is failing (since its last failure, until a checkpoint commits), else 0."
    );
    describe_gauge!(
        "weir_checkpoint_bytes",
        Unit::Bytes,
        "Size of the partition's last committed snapshot."
    );
    describe_gauge!(
        "weir_checkpoint_changed_keys",
        Unit::Count,
        "Keys the last checkpoint wrote to the local state copy."
    );
    describe_gauge!(
        "weir_consumer_lag_records",
        Unit::Count,
        "Records between the partition's next offset and its high watermark, at the last checkpoint."
    );
    describe_gauge!(
        "weir_state_bytes",
        Unit::Bytes,
        "Estimated bytes of the partition's keyed state."
    );
    describe_gauge!(
        "weir_worker_partitions",
        Unit::Count,
        "Partitions this worker runs."
    );
    describe_histogram!(
        "weir_batch_processing_seconds",
        Unit::Seconds,
        "Time to take one poll batch through the pipeline and into the transaction."
    );
    describe_histogram!(
        "weir_checkpoint_seconds",
        Unit::Seconds,
        "Time from storing a checkpoint's snapshot to its commit, report and pruning."
    );
    describe_histogram!(
        "weir_transaction_commit_seconds",
        Unit::Seconds,
        "Time to commit a checkpoint's Kafka transaction."
    );
}
