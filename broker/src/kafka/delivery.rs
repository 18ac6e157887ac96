//! The delivery reports of a writer's records: counted by its producer context on
//! librdkafka's threads, awaited by the writer (backpressure, commit, abort).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::task::AtomicWaker;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};

/// The delivery reports of one writer's records, kept by its producer's context: a count
/// of records enqueued and not yet reported, and the first failed delivery. librdkafka
/// calls [`WriterContext::delivery`] on the producer's polling thread (or on the thread of
/// a `flush`, which `commit_transaction` and `abort_transaction` run), so `send` costs a
/// counter update instead of a delivery future per record.
#[derive(Default)]
pub(super) struct DeliveryTracker {
    /// Records enqueued whose delivery report has not arrived yet.
    pub(super) pending: AtomicUsize,
    /// A delivery failed since the last reset; `first_failure` holds its error.
    failed: AtomicBool,
    first_failure: Mutex<Option<KafkaError>>,
    /// The writer's task while it waits for reports (backpressure, commit, abort).
    waker: AtomicWaker,
}

impl DeliveryTracker {
    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub(super) fn failure(&self) -> Option<KafkaError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let failure = self
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(failure.clone().unwrap_or(KafkaError::Canceled))
    }

    /// Forgets failures once an aborted transaction's reports have all arrived.
    pub(super) fn reset_failure(&self) {
        let mut failure = self
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *failure = None;
        self.failed.store(false, Ordering::Release);
    }

    /// Waits until `done` holds, or (if `until_failure`) a delivery has failed.
    pub(super) async fn wait_until(&self, until_failure: bool, done: impl Fn(&Self) -> bool) {
        let over = || done(self) || (until_failure && self.failed.load(Ordering::Acquire));
        futures::future::poll_fn(|cx| {
            if over() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A report may have arrived before the waker was registered.
            if over() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// The writer's producer context: counts delivery reports into a [`DeliveryTracker`].
pub(super) struct WriterContext {
    pub(super) tracker: Arc<DeliveryTracker>,
}

impl ClientContext for WriterContext {}

impl ProducerContext for WriterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((err, _message)) = result {
            let mut failure = self
                .tracker
                .first_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if failure.is_none() {
                *failure = Some(err.clone());
            }
            self.tracker.failed.store(true, Ordering::Release);
        }
        self.tracker.pending.fetch_sub(1, Ordering::AcqRel);
        self.tracker.waker.wake();
    }
}

pub(super) type WriterProducer = ThreadedProducer<WriterContext>;
