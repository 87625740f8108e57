//! What the server under load costs, read from `/proc/PID` (Linux).

use std::fs;

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`. Assumed
/// to be 100 (`getconf CLK_TCK` on every Linux this runs on) rather than
/// asked of libc, which would need `unsafe`; CPU figures are therefore
/// 10 ms grains, fine for runs of seconds.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// The server process, by pid.
#[derive(Clone, Copy, Debug)]
pub struct ServerProcess {
    /// Its pid.
    pub pid: u32,
}

impl ServerProcess {
    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> std::io::Result<f64> {
        self.cpu_times().map(|(user, system)| user + system)
    }

    /// CPU time used so far in user space and in the kernel, in seconds.
    /// On loopback the kernel's share includes the receiving side's TCP
    /// work for every write, so the user share is what the server's own
    /// code costs.
    pub fn cpu_times(&self) -> std::io::Result<(f64, f64)> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        cpu_ticks(&stat)
            .map(|(user, system)| {
                (
                    user as f64 / TICKS_PER_SECOND,
                    system as f64 / TICKS_PER_SECOND,
                )
            })
            .ok_or_else(|| std::io::Error::other("unreadable /proc/PID/stat"))
    }

    /// Resident set size now, in bytes.
    pub fn rss_bytes(&self) -> std::io::Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        rss_kib(&status)
            .map(|kib| kib * 1024)
            .ok_or_else(|| std::io::Error::other("no VmRSS in /proc/PID/status"))
    }
}

/// `(utime, stime)` from a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces, so fields are counted after
/// the last `)`: state is field 3, utime 14, stime 15.
fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat =
            "1234 (slosh cli) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0 5 1000 200";
        assert_eq!(cpu_ticks(stat), Some((250, 31)));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_rss() {
        let me = ServerProcess {
            pid: std::process::id(),
        };
        assert!(me.cpu_seconds().unwrap() >= 0.0);
        assert!(me.rss_bytes().unwrap() > 0);
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  5120 kB\n"), Some(5120));
    }
}
