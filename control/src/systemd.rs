//! Telling systemd how brinkd is doing (`Type=notify`): ready once the saved state is
//! restored, stopping at shutdown, and watchdog pings from the control loop while every worker
//! keeps polling, so a hung control thread or worker gets brinkd restarted. Outside systemd
//! (no `NOTIFY_SOCKET`) nothing is sent.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The link to the service manager.
#[derive(Debug)]
pub struct Notifier {
    /// How often to ping the watchdog: half its timeout; `None` if it is off.
    every: Option<Duration>,
    next: Instant,
    /// Each worker's poll count at the last ping.
    polls: Vec<u64>,
}

impl Notifier {
    /// Reads the watchdog settings systemd gave this process.
    pub fn from_env() -> Self {
        let mut usec = 0;
        let every =
            sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec) / 2);
        if let Some(every) = every {
            tracing::info!(?every, "systemd watchdog on");
        }
        Notifier {
            every,
            next: Instant::now(),
            polls: Vec::new(),
        }
    }

    /// Start-up is done; `status` says what runs.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }

    /// Pings the watchdog if it is due and every worker polled since the last ping;
    /// `polls` gives each worker's poll count.
    pub fn tick(&mut self, now: Instant, polls: impl FnOnce() -> Vec<u64>) {
        let Some(every) = self.every else {
            return;
        };
        if now < self.next {
            return;
        }
        self.next = now + every;
        let polls = polls();
        let stuck = stuck_workers(&self.polls, &polls);
        self.polls = polls;
        if stuck.is_empty() {
            send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(?stuck, "workers stopped polling; no watchdog ping");
        }
    }
}

/// The workers whose poll count did not move from `before` to `now` (none on the first look).
fn stuck_workers(before: &[u64], now: &[u64]) -> Vec<usize> {
    now.iter()
        .zip(before)
        .enumerate()
        .filter(|(_, (now, before))| now == before)
        .map(|(w, _)| w)
        .collect()
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_whose_polls_stand_still_is_stuck() {
        assert!(stuck_workers(&[], &[5, 7]).is_empty(), "first look");
        assert!(stuck_workers(&[5, 7], &[6, 9]).is_empty());
        assert_eq!(stuck_workers(&[5, 7], &[6, 7]), [1]);
    }
}
