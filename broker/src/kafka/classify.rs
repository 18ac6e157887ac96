//! rdkafka's errors in the seam's terms ([`BrokerError`]): which codes mean fenced,
//! unavailable, timed out, too large, unknown topic, or a client to rebuild; and a topic's
//! metadata read as a partition count or an unknown topic.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::BrokerError;

/// A topic's partition count in `metadata`, and whether every partition has a leader.
/// A topic with no partitions (being deleted) counts as unknown.
pub(super) fn partitions_of(
    metadata: &rdkafka::metadata::Metadata,
    topic: &str,
) -> Result<(u32, bool), BrokerError> {
    let Some(entry) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(BrokerError::UnknownTopic(topic.to_string()));
    };
    if let Some(err) = entry.error() {
        return Err(classify_code(
            &format!("metadata of topic {topic}"),
            err.into(),
        ));
    }
    let partitions = entry.partitions();
    if partitions.is_empty() {
        return Err(BrokerError::UnknownTopic(topic.to_string()));
    }
    let count = u32::try_from(partitions.len())
        .map_err(|_| BrokerError::Fatal(format!("topic {topic} has too many partitions")))?;
    let led = partitions
        .iter()
        .all(|p| p.error().is_none() && p.leader() >= 0);
    Ok((count, led))
}

/// A topic's partition count in `metadata` and its replication factor (the replicas of
/// its first partition).
pub(super) fn replicas_of(
    metadata: &rdkafka::metadata::Metadata,
    topic: &str,
) -> Result<(u32, u16), BrokerError> {
    let (count, _) = partitions_of(metadata, topic)?;
    let replicas = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
        .map_or(0, |p| p.replicas().len());
    let replicas = u16::try_from(replicas)
        .map_err(|_| BrokerError::Fatal(format!("topic {topic} has {replicas} replicas")))?;
    Ok((count, replicas))
}

fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Maps an rdkafka error to the seam's. `fatal` is the client's fatal error, if it has one:
/// once set, the client is unusable whatever the call's own error says.
pub(super) fn classify(
    what: &str,
    err: &KafkaError,
    fatal: Option<(RDKafkaErrorCode, String)>,
) -> BrokerError {
    if let Some((code, reason)) = fatal {
        let message = format!("{what}: {reason} ({code:?})");
        return if is_fenced(code) {
            BrokerError::Fenced(message)
        } else {
            BrokerError::Fatal(message)
        };
    }
    if let KafkaError::Transaction(rd) = err {
        let code = rd.code();
        let message = format!("{what}: {rd} ({code:?})");
        if is_fenced(code) {
            return BrokerError::Fenced(message);
        }
        if rd.is_fatal() {
            return BrokerError::Fatal(message);
        }
        if rd.txn_requires_abort() {
            // The transaction can only be aborted now; a missing topic is still named as
            // such (the memory model does the same), and the next commit says AbortRequired.
            return match classify_code(what, code) {
                unknown @ BrokerError::UnknownTopic(_) => unknown,
                _ => BrokerError::AbortRequired(message),
            };
        }
        if rd.is_retriable() {
            return match classify_code(what, code) {
                e @ (BrokerError::Timeout(_) | BrokerError::Unavailable(_)) => e,
                _ => BrokerError::Timeout(message),
            };
        }
        return classify_code(what, code);
    }
    match err.rdkafka_error_code() {
        Some(code) => match classify_code(what, code) {
            BrokerError::Fatal(_) => BrokerError::Fatal(format!("{what}: {err}")),
            other => other,
        },
        None => BrokerError::Fatal(format!("{what}: {err}")),
    }
}

pub(super) fn classify_code(what: &str, code: RDKafkaErrorCode) -> BrokerError {
    use RDKafkaErrorCode as C;
    let message = format!("{what}: {code}");
    match code {
        c if is_fenced(c) => BrokerError::Fenced(message),
        C::UnknownTopicOrPartition | C::UnknownPartition | C::UnknownTopic | C::UnknownTopicId => {
            BrokerError::UnknownTopic(message)
        }
        C::MessageSizeTooLarge => BrokerError::RecordTooLarge(message),
        C::OperationTimedOut | C::RequestTimedOut | C::MessageTimedOut | C::TimedOutQueue => {
            BrokerError::Timeout(message)
        }
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::BrokerNotAvailable
        | C::NetworkException
        | C::CoordinatorLoadInProgress
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::PreferredLeaderNotAvailable => BrokerError::Unavailable(message),
        _ => BrokerError::Fatal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    #[test]
    fn fencing_codes_map_to_fenced() {
        for code in [
            RDKafkaErrorCode::Fenced,
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
        ] {
            assert!(matches!(classify_code("x", code), BrokerError::Fenced(_)));
            let err = KafkaError::MessageProduction(code);
            assert!(matches!(classify("x", &err, None), BrokerError::Fenced(_)));
        }
        let fatal = Some((RDKafkaErrorCode::ProducerFenced, "fenced".to_string()));
        let err = KafkaError::MessageProduction(RDKafkaErrorCode::Fatal);
        assert!(matches!(classify("x", &err, fatal), BrokerError::Fenced(_)));
        let fatal = Some((RDKafkaErrorCode::InvalidMessage, "bad".to_string()));
        assert!(matches!(classify("x", &err, fatal), BrokerError::Fatal(_)));
    }
}
