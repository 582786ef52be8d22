//! What the status page shows of one target: its last scrape, its last failure, and how many
//! scrapes and failures it had over the last five minutes.
//!
//! Kept beside the target's series and recorded in the same step, with a few relaxed atomic
//! stores and one compare-and-swap: no lock, no allocation, a fixed size per target
//! ([`ScrapeLog`] is under 200 bytes), so a fleet of 10,000 targets costs under 2 MiB and a
//! scrape costs nothing measurable. The fields of one scrape are stored one by one, so a reader
//! racing a writer may see the status of one scrape with the duration of the next: a page
//! refreshed every few seconds does not care, and the scrape path takes no lock for it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of one window of the counts.
const WINDOW_SECS: u64 = 30;
/// The span the counts cover: five minutes.
pub const SPAN: Duration = Duration::from_secs(300);
/// Windows kept: the span's, and the one being filled.
const WINDOWS: usize = (SPAN.as_secs() / WINDOW_SECS) as usize + 1;

/// A window's counts in one word, so a window moves on and counts in one atomic step: the
/// window's number (low 16 bits of the seconds since the epoch / 30; a stale window is told
/// apart by the time of the last scrape), then scrapes and failures, 24 bits each, saturating.
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const STAMP_MASK: u64 = 0xffff;
/// The bit of a stored status's high half that says the scrape failed.
const FAILED: u32 = 0x8000;

/// One target's record of its recent scrapes.
#[derive(Debug, Default)]
pub struct ScrapeLog {
    /// When the last scrape ended, in milliseconds since the epoch; 0 before the first.
    last_at_ms: AtomicU64,
    /// Its status in the low half; the high half is [`FAILED`] and its failure's code when it
    /// failed, 0 when it did not.
    last_status: AtomicU32,
    /// Its duration in microseconds.
    last_micros: AtomicU64,
    /// The body bytes it sent the client.
    last_bytes: AtomicU64,
    /// When the last failed scrape ended, in milliseconds since the epoch; 0 if none did.
    failed_at_ms: AtomicU64,
    /// Its status, with [`FAILED`] and its failure's code in the high half.
    failed_status: AtomicU32,
    /// The counts of the last windows, indexed by window number modulo [`WINDOWS`].
    windows: [AtomicU64; WINDOWS],
}

/// One finished scrape, as [`ScrapeLog::record`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeEnd {
    /// The status the client was answered with.
    pub status: u16,
    /// How long it took.
    pub duration: Duration,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// `None` when it succeeded; else the code of its reason (`proxy::Failure::code`; 0 when
    /// the exporter's own answer was not a success).
    pub failure: Option<u16>,
}

/// A copy of a [`ScrapeLog`], for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeSummary {
    /// The last scrape: when it ended and how.
    pub last: Option<(SystemTime, ScrapeEnd)>,
    /// The last failed scrape: when it ended, its status and reason code.
    pub last_failure: Option<(SystemTime, u16, u16)>,
    /// Scrapes over the last [`SPAN`].
    pub scrapes: u64,
    /// Failed scrapes over the last [`SPAN`].
    pub failures: u64,
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .max(1)
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The failure code of a stored status, if it failed.
fn failure_of(stored: u32) -> Option<u16> {
    let high = stored >> 16;
    (high & FAILED != 0).then_some((high & !FAILED) as u16)
}

fn window_of(ms: u64) -> u64 {
    ms / 1000 / WINDOW_SECS
}

fn pack(window: u64, scrapes: u64, failures: u64) -> u64 {
    ((window & STAMP_MASK) << (2 * COUNT_BITS)) | (scrapes << COUNT_BITS) | failures
}

fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

impl ScrapeLog {
    /// Records `scrape`, which ended at `at`.
    pub fn record(&self, at: SystemTime, scrape: ScrapeEnd) {
        let ms = millis(at);
        let high = scrape
            .failure
            .map_or(0, |code| FAILED | (u32::from(code) & !FAILED));
        let status = u32::from(scrape.status) | (high << 16);
        self.last_status.store(status, Relaxed);
        self.last_micros.store(
            u64::try_from(scrape.duration.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
        self.last_bytes.store(scrape.bytes, Relaxed);
        if scrape.failure.is_some() {
            self.failed_status.store(status, Relaxed);
            self.failed_at_ms.store(ms, Relaxed);
        }
        self.last_at_ms.store(ms, Relaxed);
        let window = window_of(ms);
        let slot = &self.windows[(window % WINDOWS as u64) as usize];
        let failed = u64::from(scrape.failure.is_some());
        let _ = slot.fetch_update(Relaxed, Relaxed, |word| {
            let (stamp, scrapes, failures) = unpack(word);
            Some(if stamp == window & STAMP_MASK && word != 0 {
                pack(
                    window,
                    (scrapes + 1).min(COUNT_MAX),
                    (failures + failed).min(COUNT_MAX),
                )
            } else {
                pack(window, 1, failed)
            })
        });
    }

    /// What was recorded, as of `now`; `None` before the first scrape.
    pub fn summary(&self, now: SystemTime) -> Option<ScrapeSummary> {
        let last_ms = self.last_at_ms.load(Relaxed);
        if last_ms == 0 {
            return None;
        }
        let status = self.last_status.load(Relaxed);
        let last = ScrapeEnd {
            status: status as u16,
            duration: Duration::from_micros(self.last_micros.load(Relaxed)),
            bytes: self.last_bytes.load(Relaxed),
            failure: failure_of(status),
        };
        let failed_ms = self.failed_at_ms.load(Relaxed);
        let failed = self.failed_status.load(Relaxed);
        let last_failure = (failed_ms != 0).then(|| {
            (
                time_of(failed_ms),
                failed as u16,
                failure_of(failed).unwrap_or(0),
            )
        });
        let now_window = window_of(millis(now));
        let oldest = now_window.saturating_sub(WINDOWS as u64 - 1);
        let (mut scrapes, mut failures) = (0, 0);
        // Nothing recorded within the span: every window is stale, whatever its number says.
        if window_of(last_ms) >= oldest {
            for w in oldest..=now_window {
                let (stamp, s, f) =
                    unpack(self.windows[(w % WINDOWS as u64) as usize].load(Relaxed));
                if stamp == w & STAMP_MASK {
                    scrapes += s;
                    failures += f;
                }
            }
        }
        Some(ScrapeSummary {
            last: Some((time_of(last_ms), last)),
            last_failure,
            scrapes,
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn ok() -> ScrapeEnd {
        ScrapeEnd {
            status: 200,
            duration: Duration::from_millis(12),
            bytes: 59_000,
            failure: None,
        }
    }

    fn refused() -> ScrapeEnd {
        ScrapeEnd {
            status: 502,
            duration: Duration::from_micros(300),
            bytes: 60,
            failure: Some(2),
        }
    }

    #[test]
    fn nothing_before_the_first_scrape() {
        assert_eq!(ScrapeLog::default().summary(at(0)), None);
    }

    #[test]
    fn the_last_scrape_and_the_last_failure() {
        let log = ScrapeLog::default();
        log.record(at(10), refused());
        log.record(at(20), ok());
        let summary = log.summary(at(21)).expect("recorded");
        assert_eq!(summary.last, Some((at(20), ok())));
        assert_eq!(summary.last_failure, Some((at(10), 502, 2)));
        assert_eq!((summary.scrapes, summary.failures), (2, 1));
    }

    #[test]
    fn an_exporter_answer_that_is_not_a_success_counts_as_failed() {
        let log = ScrapeLog::default();
        let not_found = ScrapeEnd {
            status: 404,
            failure: Some(0),
            ..ok()
        };
        log.record(at(0), not_found);
        let summary = log.summary(at(0)).expect("recorded");
        assert_eq!(summary.last.map(|l| l.1.failure), Some(Some(0)));
        assert_eq!(summary.last_failure, Some((at(0), 404, 0)));
        assert_eq!(summary.failures, 1);
    }

    #[test]
    fn counts_cover_five_minutes_and_forget_older_scrapes() {
        let log = ScrapeLog::default();
        // One scrape every 15 s for 20 minutes, every fourth one failing.
        for i in 0..80u64 {
            let end = if i % 4 == 0 { refused() } else { ok() };
            log.record(at(i * 15), end);
        }
        let now = at(79 * 15);
        let summary = log.summary(now).expect("recorded");
        // The span is 5 minutes plus the window being filled: 20 to 22 scrapes.
        assert!(
            (20..=22).contains(&summary.scrapes),
            "{} scrapes",
            summary.scrapes
        );
        assert!(
            (5..=6).contains(&summary.failures),
            "{} failures",
            summary.failures
        );
        // Ten minutes later nothing is left in the span, though the last scrape stays.
        let later = log.summary(at(79 * 15 + 600)).expect("recorded");
        assert_eq!((later.scrapes, later.failures), (0, 0));
        assert_eq!(later.last, summary.last);
    }

    #[test]
    fn a_window_seen_again_a_whole_cycle_later_starts_from_zero() {
        let log = ScrapeLog::default();
        log.record(at(0), ok());
        log.record(at(0), ok());
        // The same slot, WINDOWS windows later.
        let again = WINDOWS as u64 * WINDOW_SECS;
        log.record(at(again), ok());
        assert_eq!(log.summary(at(again)).map(|s| s.scrapes), Some(1));
    }

    #[test]
    fn counts_saturate_instead_of_spilling_into_the_window_number() {
        let log = ScrapeLog::default();
        let slot = &log.windows[(window_of(millis(at(0))) % WINDOWS as u64) as usize];
        slot.store(
            pack(window_of(millis(at(0))), COUNT_MAX, COUNT_MAX),
            Relaxed,
        );
        log.last_at_ms.store(millis(at(0)), Relaxed);
        log.record(at(0), refused());
        let summary = log.summary(at(0)).expect("recorded");
        assert_eq!((summary.scrapes, summary.failures), (COUNT_MAX, COUNT_MAX));
    }

    #[test]
    fn bounded_size_per_target() {
        assert!(std::mem::size_of::<ScrapeLog>() <= 160);
    }
}
