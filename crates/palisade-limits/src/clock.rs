//! The limiter clock: monotonic in production, hand-driven in tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic clock shared by a limiter and whoever drives it.
///
/// [`Clock::real`] reads [`Instant`]; [`Clock::fake`] only moves when [`Clock::advance`] is
/// called, so tests are deterministic and never sleep. Clones share the same time.
#[derive(Clone, Debug)]
pub struct Clock(Inner);

#[derive(Clone, Debug)]
enum Inner {
    Real(Instant),
    Fake(Arc<AtomicU64>),
}

impl Default for Clock {
    fn default() -> Self {
        Self::real()
    }
}

impl Clock {
    /// The process's monotonic clock.
    pub fn real() -> Self {
        Self(Inner::Real(Instant::now()))
    }

    /// A clock that starts at zero and moves only through [`Clock::advance`].
    pub fn fake() -> Self {
        Self(Inner::Fake(Arc::new(AtomicU64::new(0))))
    }

    /// Moves a fake clock forward (no effect on a real clock).
    pub fn advance(&self, by: Duration) {
        if let Inner::Fake(n) = &self.0 {
            n.fetch_add(
                u64::try_from(by.as_nanos()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    /// Time since the clock's origin.
    pub fn elapsed(&self) -> Duration {
        match &self.0 {
            Inner::Real(origin) => origin.elapsed(),
            Inner::Fake(n) => Duration::from_nanos(n.load(Ordering::SeqCst)),
        }
    }
}

impl governor::clock::Clock for Clock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.elapsed()
    }
}
