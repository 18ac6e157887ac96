//! The two places where the rdkafka side of the seam leaves the caller's thread: blocking
//! librdkafka calls, and destroying a client (which joins its threads).

use crate::BrokerError;

/// Runs a blocking librdkafka call on tokio's blocking pool.
// The production side of the broker seam: librdkafka's transactional and metadata calls
// block for up to a round trip or their timeout, which would stall a partition actor's
// single-threaded runtime. The simulation uses the in-memory broker, never this.
#[allow(clippy::disallowed_methods)]
pub(super) async fn blocking<T, F>(call: F) -> Result<T, BrokerError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| BrokerError::Fatal(format!("a blocking broker call failed: {e}")))
}

/// Drops a librdkafka client on the blocking pool when there is a runtime (destroying one
/// joins its threads), inline otherwise.
#[allow(clippy::disallowed_methods)] // see `blocking`
pub(super) fn drop_off_thread<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}
