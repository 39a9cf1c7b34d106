//! Telling systemd how brinkd is doing (`Type=notify`): ready once the saved state is
//! restored, stopping at shutdown, and watchdog pings from the control loop, so a control
//! thread that hangs gets brinkd restarted. Outside systemd (no `NOTIFY_SOCKET`) nothing is
//! sent.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The link to the service manager.
#[derive(Debug)]
pub struct Notifier {
    /// How often to ping the watchdog: half its timeout; `None` if it is off.
    every: Option<Duration>,
    next: Instant,
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

    /// Pings the watchdog if it is due.
    pub fn tick(&mut self, now: Instant) {
        if let Some(every) = self.every {
            if now >= self.next {
                self.next = now + every;
                send(&[NotifyState::Watchdog]);
            }
        }
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
