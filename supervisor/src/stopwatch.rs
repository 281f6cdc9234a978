//! A session's timeout clock: running time, with the time spent on answered questions given
//! back.
//!
//! This module owns the arithmetic of "how long has the session really run". While a
//! question is open the clock keeps running, so `--timeout` ends a session even while
//! nobody answers; once the question is answered (its [`PauseGuard`] dropped) the time it
//! was open is credited back, so a person's thinking time never counts. Prompts overlap (two
//! execs may wait for answers at once): the credit is the time during which at least one
//! question was open, counted once. The approvers bound each question by the prompt timeout,
//! so the credit is bounded too. It never kills anything itself: whoever awaits
//! [`Stopwatch::expired`] does.
//!
//! Time is `tokio::time::Instant`, so tests drive it with `tokio::time::pause`/`advance`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The timeout stopwatch of one session; clones share the clock.
#[derive(Debug, Clone)]
pub struct Stopwatch {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Ticks whenever time is credited back, so `expired` recomputes its deadline.
    changed: watch::Sender<()>,
}

#[derive(Debug)]
struct State {
    limit: Option<Duration>,
    started: Instant,
    /// Time given back for questions that were answered.
    credited: Duration,
    /// Since when at least one question has been open.
    asking_since: Option<Instant>,
    pauses: usize,
}

impl State {
    /// Running time: wall time minus the answered questions' time. An open question's time
    /// counts until it is answered.
    fn elapsed(&self, now: Instant) -> Duration {
        (now - self.started).saturating_sub(self.credited)
    }
}

/// Marks a question open while alive; dropping it (the answer) gives the time back.
#[derive(Debug)]
#[must_use = "the question counts as answered as soon as the guard is dropped"]
pub struct PauseGuard {
    shared: Arc<Shared>,
}

impl Stopwatch {
    /// Start a stopwatch now; `None` is no timeout (`expired` never completes).
    pub fn start(limit: Option<Duration>) -> Stopwatch {
        let (changed, _) = watch::channel(());
        Stopwatch {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    limit,
                    started: Instant::now(),
                    credited: Duration::ZERO,
                    asking_since: None,
                    pauses: 0,
                }),
                changed,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// A question is open until the returned guard drops; the time until the last open
    /// question is answered is then credited back.
    pub fn pause(&self) -> PauseGuard {
        let mut st = self.state();
        st.pauses += 1;
        if st.pauses == 1 {
            st.asking_since = Some(Instant::now());
        }
        PauseGuard {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Running time so far (answered questions excluded, open ones included).
    pub fn elapsed(&self) -> Duration {
        self.state().elapsed(Instant::now())
    }

    /// Running time left before expiry; `None` without a limit.
    pub fn remaining(&self) -> Option<Duration> {
        let st = self.state();
        st.limit
            .map(|l| l.saturating_sub(st.elapsed(Instant::now())))
    }

    /// Whether at least one question is open.
    pub fn is_paused(&self) -> bool {
        self.state().pauses > 0
    }

    pub fn limit(&self) -> Option<Duration> {
        self.state().limit
    }

    /// Completes once the running time reaches the limit, open questions or not; never
    /// without a limit. Cancel-safe: dropping the future loses nothing.
    pub async fn expired(&self) {
        let mut changes = self.shared.changed.subscribe();
        loop {
            // Mark the current state seen before reading it, so a credit that happens
            // after the read wakes us.
            changes.borrow_and_update();
            let deadline = {
                let st = self.state();
                st.limit.map(|limit| st.started + st.credited + limit)
            };
            let Some(deadline) = deadline else {
                return std::future::pending::<()>().await;
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                _ = changes.changed() => {}
            }
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state();
            st.pauses -= 1;
            if st.pauses == 0
                && let Some(since) = st.asking_since.take()
            {
                let now = Instant::now();
                st.credited += now - since;
            }
        }
        self.shared.changed.send_replace(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::task::JoinHandle;
    use tokio::time::advance;

    const MS: Duration = Duration::from_millis(1);

    fn watch_expiry(sw: &Stopwatch) -> JoinHandle<()> {
        let sw = sw.clone();
        tokio::spawn(async move { sw.expired().await })
    }

    /// Let the spawned waiter run after a clock change.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn step(d: Duration) {
        advance(d).await;
        settle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn expires_at_the_limit_without_prompts() {
        let sw = Stopwatch::start(Some(Duration::from_secs(10)));
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(10) - MS).await;
        assert!(!waiter.is_finished());
        step(MS).await;
        assert!(waiter.is_finished());
        assert_eq!(sw.remaining(), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_prompt_does_not_count() {
        let sw = Stopwatch::start(Some(Duration::from_secs(10)));
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(4)).await;
        let prompt = sw.pause();
        assert!(sw.is_paused());
        step(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        drop(prompt); // answered after 5 s: given back
        settle().await;
        assert_eq!(sw.elapsed(), Duration::from_secs(4));
        step(Duration::from_secs(6) - MS).await;
        assert!(!waiter.is_finished(), "time spent asking a human counted");
        step(MS).await;
        assert!(waiter.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_prompts_are_credited_once() {
        let sw = Stopwatch::start(Some(Duration::from_secs(10)));
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(2)).await; // running 2
        let first = sw.pause();
        step(Duration::from_secs(1)).await;
        let second = sw.pause();
        step(Duration::from_secs(2)).await;
        drop(first); // the second question is still open
        assert!(sw.is_paused());
        step(Duration::from_secs(3)).await;
        drop(second); // questions were open from 2 s to 8 s
        settle().await;
        assert!(!sw.is_paused());
        assert_eq!(sw.elapsed(), Duration::from_secs(2));
        step(Duration::from_secs(8) - MS).await;
        assert!(!waiter.is_finished());
        step(MS).await;
        assert!(waiter.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_question_does_not_hold_off_the_timeout() {
        let sw = Stopwatch::start(Some(Duration::from_secs(3)));
        step(Duration::from_secs(1)).await;
        let _prompt = sw.pause();
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(2) - MS).await;
        assert!(!waiter.is_finished());
        step(MS).await;
        assert!(
            waiter.is_finished(),
            "an unanswered question kept the session past its timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_never_expires() {
        let sw = Stopwatch::start(None);
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(1_000_000)).await;
        assert!(!waiter.is_finished());
        assert_eq!(sw.remaining(), None);
        waiter.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn expired_can_be_awaited_again_and_from_clones() {
        let sw = Stopwatch::start(Some(Duration::from_secs(1)));
        let clone = sw.clone();
        step(Duration::from_secs(2)).await;
        sw.expired().await;
        clone.expired().await;
    }
}
