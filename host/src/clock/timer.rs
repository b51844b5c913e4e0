//! Sleeping until a wall-clock time. Tokio's timers count monotonic time, but a task is due
//! at a time of day, and a Pi without a real-time clock boots with yesterday's time and has
//! it set forward by NTP later: a monotonic sleep computed before that jump would wake hours
//! late. On Linux a `timerfd` on `CLOCK_REALTIME` with an absolute deadline fires when the
//! wall clock reaches it, however the clock was set meanwhile, and `TFD_TIMER_CANCEL_ON_SET`
//! also wakes it when the clock is set, so the caller re-reads the clock and its tasks.

use std::io;

/// A reusable sleep until a wall-clock instant.
pub struct WallTimer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

#[cfg(target_os = "linux")]
impl WallTimer {
    pub fn new() -> io::Result<Self> {
        use std::os::fd::{FromRawFd as _, OwnedFd};
        // SAFETY: timerfd_create has no memory preconditions; the fd it returns is ours.
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd keeps the descriptor open, and its `as_raw_fd` always returns
        // it, for as long as the AsyncFd owns it.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Returns once the wall clock reads `unix_ms` or later — or earlier, when the clock was
    /// set meanwhile: callers re-read the clock and sleep again if it is not time yet.
    pub async fn sleep_until(&mut self, unix_ms: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        // 0 would disarm the timer: the epoch's first millisecond is as good as any past time.
        let unix_ms = unix_ms.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                // Seconds since the epoch fit any time_t (musl deprecates naming the type).
                tv_sec: (unix_ms / 1000) as _,
                tv_nsec: ((unix_ms % 1000) * 1_000_000) as libc::c_long,
            },
        };
        let flags = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
        // SAFETY: `spec` outlives the call; a null old-value pointer is allowed.
        let set = unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), flags, &spec, std::ptr::null_mut())
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a buffer of 8.
            let read = unsafe {
                libc::read(
                    ready.get_inner().as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if read >= 0 {
                return Ok(());
            }
            match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                // The clock was set: wake the caller to look again.
                e if e.raw_os_error() == Some(libc::ECANCELED) => return Ok(()),
                e => return Err(e),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl WallTimer {
    pub fn new() -> io::Result<Self> {
        Ok(Self {})
    }

    /// Without a timerfd: a monotonic sleep of at most a minute, so a changed clock is noticed
    /// within one.
    pub async fn sleep_until(&mut self, unix_ms: u64) -> io::Result<()> {
        let wait = unix_ms.saturating_sub(super::unix_ms()).min(60_000);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_wall_clock_time_and_at_once_for_a_past_one() {
        let mut timer = WallTimer::new().unwrap();
        let start = std::time::Instant::now();
        timer
            .sleep_until(super::super::unix_ms() + 150)
            .await
            .unwrap();
        let waited = start.elapsed().as_millis();
        assert!((140..1000).contains(&waited), "woke after {waited} ms");
        let start = std::time::Instant::now();
        timer
            .sleep_until(super::super::unix_ms() - 10_000)
            .await
            .unwrap();
        timer.sleep_until(0).await.unwrap();
        assert!(start.elapsed().as_millis() < 100, "a past time is due now");
    }
}
