//! Blocking work (rdkafka's synchronous clients, the driver threads) on an OS thread of its
//! own, awaited from the bench's async main so that Ctrl-C still reaches it and drops the
//! guards of the processes it started.

use anyhow::Context;

/// Runs `work` on a new thread named `name` and waits for its result.
pub async fn on_thread<T, F>(name: &str, work: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = done.send(work());
        })
        .with_context(|| format!("cannot start thread {name}"))?;
    result
        .await
        .with_context(|| format!("thread {name} ended without a result (it panicked)"))?
}
