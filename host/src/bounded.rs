//! A call that may hang (a plugin's `shutdown`, a processor's `stop`) run in a thread of
//! its own and waited for at most a timeout: the host goes on when it does not return.
//! The thread is left behind then (it ends when the call does); its result is dropped.

use std::{sync::mpsc, thread, time::Duration};

/// Runs `f` in a thread named `name` and waits for its result at most `timeout`:
/// `Ok(Some(result))`, `Ok(None)` if it did not return in time, `Err` if no thread
/// could be started.
pub(crate) fn call_with_timeout<T: Send + 'static>(
    name: String,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<Option<T>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new().name(name).spawn(move || {
        let _receiver_gone = tx.send(f());
    })?;
    Ok(rx.recv_timeout(timeout).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_result_or_none_after_the_timeout() {
        let r = call_with_timeout("quick".into(), Duration::from_secs(5), || 42).unwrap();
        assert_eq!(r, Some(42));
        let r = call_with_timeout("slow".into(), Duration::from_millis(20), || {
            thread::sleep(Duration::from_millis(500));
            1
        })
        .unwrap();
        assert_eq!(r, None);
    }
}
