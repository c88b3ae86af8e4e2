//! Summaries of timed samples (median and range) for the standalone bench tasks.

use std::time::Duration;

/// Wall times of one configuration.
#[derive(Debug, Clone)]
pub struct Stats {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
    /// Every sample, in the order taken (for `cargo xtask bench`'s `Series`).
    pub samples: Vec<Duration>,
}

impl Stats {
    /// Summarises `samples`; there is at least one.
    pub fn of(samples: Vec<Duration>) -> Stats {
        let mut sorted = samples.clone();
        sorted.sort();
        Stats {
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            samples,
        }
    }
}
