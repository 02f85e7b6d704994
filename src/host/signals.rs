//! Process signals: the operator's Ctrl-C and a supervisor's SIGTERM.

use std::future::Future;
use std::pin::Pin;

/// Starts listening for SIGINT and SIGTERM now (inside a tokio runtime),
/// and returns a future that completes when one arrives. If the listeners
/// cannot be installed the future never completes.
pub fn listen_for_termination() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => Box::pin(async move {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        }),
        _ => Box::pin(std::future::pending()),
    }
}

/// SIGHUP, each time it arrives (listened for from when this is made,
/// inside a tokio runtime). Without a listener `recv` never completes.
pub struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    pub fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Hangups(signal(SignalKind::hangup()).ok())
    }

    pub async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}
