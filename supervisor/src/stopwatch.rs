//! A session's timeout clock: running time only, paused while a human is being asked.
//!
//! This module owns the arithmetic of "how long has the session really run". Prompts
//! overlap (two execs may wait for answers at once), so pauses are counted: the clock stops
//! at the first [`Stopwatch::pause`] and starts again when the last [`PauseGuard`] is
//! dropped. It never kills anything itself: whoever awaits [`Stopwatch::expired`] does.
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
    /// Ticks on every pause/resume, so `expired` recomputes its deadline.
    changed: watch::Sender<()>,
}

#[derive(Debug)]
struct State {
    limit: Option<Duration>,
    /// Running time accumulated before `running_since`.
    accumulated: Duration,
    /// `Some` while running.
    running_since: Option<Instant>,
    pauses: usize,
}

impl State {
    fn elapsed(&self, now: Instant) -> Duration {
        self.accumulated + self.running_since.map_or(Duration::ZERO, |t| now - t)
    }
}

/// Keeps the stopwatch paused while alive (a prompt being answered).
#[derive(Debug)]
#[must_use = "the stopwatch resumes as soon as the guard is dropped"]
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
                    accumulated: Duration::ZERO,
                    running_since: Some(Instant::now()),
                    pauses: 0,
                }),
                changed,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// Stop the clock until the returned guard (and every other outstanding one) drops.
    pub fn pause(&self) -> PauseGuard {
        {
            let mut st = self.state();
            st.pauses += 1;
            if st.pauses == 1 {
                let now = Instant::now();
                st.accumulated = st.elapsed(now);
                st.running_since = None;
            }
        }
        self.shared.changed.send_replace(());
        PauseGuard {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Running time so far (time paused excluded).
    pub fn elapsed(&self) -> Duration {
        self.state().elapsed(Instant::now())
    }

    /// Running time left before expiry; `None` without a limit.
    pub fn remaining(&self) -> Option<Duration> {
        let st = self.state();
        st.limit
            .map(|l| l.saturating_sub(st.elapsed(Instant::now())))
    }

    /// Whether at least one prompt is pausing the clock.
    pub fn is_paused(&self) -> bool {
        self.state().pauses > 0
    }

    pub fn limit(&self) -> Option<Duration> {
        self.state().limit
    }

    /// Completes once the running time reaches the limit; never without a limit.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn expired(&self) {
        let mut changes = self.shared.changed.subscribe();
        loop {
            // Mark the current state seen before reading it, so a pause/resume that
            // happens after the read wakes us.
            changes.borrow_and_update();
            let next = {
                let st = self.state();
                let now = Instant::now();
                match st.limit {
                    None => Next::Never,
                    Some(limit) if st.elapsed(now) >= limit => Next::Expired,
                    Some(limit) => match st.running_since {
                        Some(_) => Next::At(now + (limit - st.elapsed(now))),
                        None => Next::Resumed,
                    },
                }
            };
            match next {
                Next::Expired => return,
                Next::Never => std::future::pending::<()>().await,
                Next::At(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        _ = changes.changed() => {}
                    }
                }
                Next::Resumed => {
                    // Paused: wait for a resume. The sender lives as long as `self`.
                    let _ = changes.changed().await;
                }
            }
        }
    }
}

/// What `expired` waits for next.
enum Next {
    Expired,
    Never,
    At(Instant),
    Resumed,
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
            if st.pauses == 0 {
                st.running_since = Some(Instant::now());
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
    async fn a_prompt_does_not_count() {
        let sw = Stopwatch::start(Some(Duration::from_secs(10)));
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(4)).await;
        let prompt = sw.pause();
        assert!(sw.is_paused());
        step(Duration::from_secs(100)).await;
        assert!(!waiter.is_finished(), "time spent asking a human counted");
        assert_eq!(sw.elapsed(), Duration::from_secs(4));
        drop(prompt);
        step(Duration::from_secs(6) - MS).await;
        assert!(!waiter.is_finished());
        step(MS).await;
        assert!(waiter.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_prompts_resume_only_when_the_last_one_ends() {
        let sw = Stopwatch::start(Some(Duration::from_secs(10)));
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(2)).await; // running 2
        let first = sw.pause();
        step(Duration::from_secs(1)).await;
        let second = sw.pause();
        step(Duration::from_secs(2)).await;
        drop(first); // the second prompt still holds the clock
        assert!(sw.is_paused());
        step(Duration::from_secs(3)).await;
        assert_eq!(sw.elapsed(), Duration::from_secs(2));
        drop(second);
        assert!(!sw.is_paused());
        step(Duration::from_secs(8) - MS).await;
        assert!(!waiter.is_finished());
        step(MS).await;
        assert!(waiter.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_that_outlasts_the_limit_does_not_expire_it() {
        let sw = Stopwatch::start(Some(Duration::from_secs(1)));
        let prompt = sw.pause();
        let waiter = watch_expiry(&sw);
        step(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished());
        drop(prompt);
        step(Duration::from_secs(1)).await;
        assert!(waiter.is_finished());
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
