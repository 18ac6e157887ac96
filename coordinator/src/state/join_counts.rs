//! A job with a `join` reads two topics: its source (the join's left side) and
//! `join.with.topic` (the right side), each with a group of upstream tasks, one per
//! partition. Its tasks can be planned only when both partition counts are known: stage 0
//! (one task per source partition), stage 1 (the join's downstream tasks, one per
//! repartition partition) and stage [`JOIN_RIGHT_STAGE`] (one per right partition). Workers
//! learn the right topic's count from Kafka and report it like the source's
//! (`Command::SetTopicPartitionCount`); until both are in, the job has no task and stays
//! pending. Both counts are fixed when the job is planned (`Job.join_left_partitions`,
//! `Job.join_partition_count`): they number the join's upstream tasks on every worker
//! (`WorkerAssignment.join_upstreams`), and partitions either topic gains later are not
//! read (another count of the right topic is refused; the source's adds no task).

use super::{
    planned_repartitions, CommandResult, ControlState, Job, PartitionState, Refusal,
    JOB_PARTITIONS_MAX,
};
use weir_core::ids::{JobId, PartitionId};
use weir_core::spec::stages::{task_id, JOIN_RIGHT_STAGE};
use weir_core::wire::JobState;

/// The right topic of the `join` in a stored spec, if it has one.
pub fn join_topic(spec: &serde_json::Value) -> Option<&str> {
    spec["pipeline"]
        .as_array()?
        .iter()
        .find_map(|stage| stage["join"]["with"]["topic"].as_str())
}

impl Job {
    /// Whether a partition count the job needs before it can be planned is unknown: its
    /// source's, or its join's right topic's.
    pub fn awaits_partition_counts(&self) -> bool {
        self.partition_count.is_none()
            || (self.join_partition_count.is_none() && join_topic(&self.spec).is_some())
    }

    /// Plans the stages after stage 0 (the repartition topics and their tasks, and a
    /// join's right side), once every count is known; nothing before.
    pub(super) fn plan_later_stages(&mut self) {
        let Some(source_partitions) = self.partition_count else {
            return;
        };
        if self.awaits_partition_counts() {
            return;
        }
        self.repartitions = planned_repartitions(self, source_partitions);
        let mut tasks: Vec<PartitionId> = Vec::new();
        for (index, &partitions) in self.repartitions.iter().enumerate() {
            tasks.extend((0..partitions).map(|p| task_id(index + 1, p)));
        }
        if let (Some(right), false) = (self.join_partition_count, self.repartitions.is_empty()) {
            tasks.extend((0..right).map(|p| task_id(JOIN_RIGHT_STAGE, p)));
            self.join_left_partitions = Some(source_partitions);
        }
        for task in tasks {
            self.partitions
                .entry(task)
                .or_insert_with(PartitionState::unowned);
        }
    }
}

impl ControlState {
    /// Records the partition count of `topic`, the right side of `job`'s join, and plans
    /// the job if its source's count is known too.
    pub(super) fn set_topic_partition_count(
        &mut self,
        job: JobId,
        topic: &str,
        partition_count: u32,
    ) -> Result<CommandResult, Refusal> {
        if partition_count == 0 || partition_count > JOB_PARTITIONS_MAX {
            return Err(Refusal::Invalid(format!(
                "partition count {partition_count} is outside 1..={JOB_PARTITIONS_MAX}"
            )));
        }
        let j = self.job_mut(job)?;
        if join_topic(&j.spec) != Some(topic) {
            return Err(Refusal::Invalid(format!(
                "job {job} reads no topic {topic} besides its source"
            )));
        }
        match j.join_partition_count {
            Some(n) if n == partition_count => return Ok(CommandResult::Done),
            Some(n) => {
                return Err(Refusal::Conflict(format!(
                    "job {job} was planned with {n} partitions of {topic}; a join's topics \
                     cannot grow under it"
                )))
            }
            None => {}
        }
        j.join_partition_count = Some(partition_count);
        if j.partition_count.is_some() && j.state == JobState::Pending {
            // The reason it was pending (a topic it reads could not be read) is gone.
            j.reason = None;
        }
        j.plan_later_stages();
        if let (Some(source_partitions), false) = (j.partition_count, j.awaits_partition_counts()) {
            for p in 0..source_partitions {
                j.partitions
                    .entry(PartitionId(p))
                    .or_insert_with(PartitionState::unowned);
            }
        }
        Ok(CommandResult::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plan;
    use crate::state::Command;
    use weir_core::ids::{TenantName, WorkerId};

    fn state_with_join_job() -> ControlState {
        let mut s = ControlState::default();
        s.apply(&Command::CreateTenant {
            name: TenantName::from("t"),
            token_hash: "h".into(),
            at_ms: 1,
        });
        let spec = weir_core::spec::parse_job_spec(
            b"name: j\nsource: { topic: auths }\npipeline:\n  - join: { with: { topic: captures }, \
              left_key: id, right_key: id, within: 1h }\nsink: { topic: out }\nparallelism: 2\n",
        )
        .unwrap();
        s.apply(&Command::SubmitJob {
            tenant: TenantName::from("t"),
            name: "j".into(),
            spec: serde_json::to_value(&spec).unwrap(),
            at_ms: 2,
        });
        s.apply(&Command::RegisterWorker {
            worker: WorkerId::from("w"),
            addr: "w:1".into(),
            at_ms: 3,
        });
        s
    }

    /// Places whatever the scheduler wants placed.
    fn schedule(s: &mut ControlState) {
        for _ in 0..10 {
            let commands = plan(s);
            if commands.is_empty() {
                return;
            }
            for c in commands {
                s.apply(&c);
            }
        }
    }

    #[test]
    fn a_join_job_is_planned_once_both_counts_are_known_in_either_order() {
        let job = JobId(1);
        for source_first in [true, false] {
            let mut s = state_with_join_job();
            assert_eq!(join_topic(&s.jobs[&job].spec), Some("captures"));
            let source = Command::SetPartitionCount {
                job,
                partition_count: 3,
            };
            let right = Command::SetTopicPartitionCount {
                job,
                topic: "captures".into(),
                partition_count: 4,
            };
            let (first, second) = if source_first {
                (source, right)
            } else {
                (right, source)
            };
            assert_eq!(s.apply(&first), CommandResult::Done);
            assert!(s.jobs[&job].awaits_partition_counts());
            assert!(s.jobs[&job].partitions.is_empty(), "no task yet");
            schedule(&mut s);
            assert_eq!(s.jobs[&job].state, JobState::Pending, "nothing to run yet");
            assert_eq!(s.apply(&second), CommandResult::Done);
            let j = &s.jobs[&job];
            assert!(!j.awaits_partition_counts());
            assert_eq!(j.repartitions, vec![2]);
            let tasks: Vec<PartitionId> = j.partitions.keys().copied().collect();
            let want: Vec<PartitionId> = (0..3)
                .map(|p| task_id(0, p))
                .chain((0..2).map(|p| task_id(1, p)))
                .chain((0..4).map(|p| task_id(JOIN_RIGHT_STAGE, p)))
                .collect();
            assert_eq!(tasks, want);
            schedule(&mut s);
            assert_eq!(s.jobs[&job].state, JobState::Running);
            assert_eq!(
                (
                    s.jobs[&job].join_left_partitions,
                    s.jobs[&job].join_partition_count
                ),
                (Some(3), Some(4))
            );
            // A source that grows adds no task: the join's upstreams keep their numbers.
            let grown = Command::SetPartitionCount {
                job,
                partition_count: 5,
            };
            assert_eq!(s.apply(&grown), CommandResult::Done);
            assert_eq!(s.jobs[&job].partitions.len(), 3 + 2 + 4);
        }
    }

    #[test]
    fn a_count_of_another_topic_or_another_count_is_refused() {
        let job = JobId(1);
        let mut s = state_with_join_job();
        let count = |topic: &str, partition_count| Command::SetTopicPartitionCount {
            job,
            topic: topic.into(),
            partition_count,
        };
        assert!(matches!(
            s.apply(&count("auths", 2)),
            CommandResult::Refused(Refusal::Invalid(_))
        ));
        assert!(matches!(
            s.apply(&count("captures", 0)),
            CommandResult::Refused(Refusal::Invalid(_))
        ));
        assert_eq!(s.apply(&count("captures", 2)), CommandResult::Done);
        assert_eq!(s.apply(&count("captures", 2)), CommandResult::Done);
        assert!(matches!(
            s.apply(&count("captures", 3)),
            CommandResult::Refused(Refusal::Conflict(_))
        ));
        // A job without a join never waits for a second count.
        s.apply(&Command::SubmitJob {
            tenant: TenantName::from("t"),
            name: "plain".into(),
            spec: serde_json::json!({"name": "plain"}),
            at_ms: 4,
        });
        s.apply(&Command::SetPartitionCount {
            job: JobId(2),
            partition_count: 1,
        });
        assert!(!s.jobs[&JobId(2)].awaits_partition_counts());
    }
}
