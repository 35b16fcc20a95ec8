//! Which process holds a run: this one's identity, and whether another's
//! is still alive (a run left `running` by a process that died is
//! `interrupted`).

use orbital_cas::Holder;

/// This process as a run's holder.
pub(crate) fn me() -> Holder {
    Holder {
        host: host_name(),
        pid: std::process::id(),
        started: start_time(std::process::id()).unwrap_or(0),
    }
}

/// Whether `holder` has certainly gone: it ran on this host, and no
/// process with its pid exists, or one does that started at another time
/// (the pid was reused). A holder on another host is never judged.
pub(crate) fn is_dead(holder: &Holder) -> bool {
    if holder.host != host_name() {
        return false;
    }
    if !exists(holder.pid) {
        return true;
    }
    match start_time(holder.pid) {
        Some(started) if holder.started != 0 => started != holder.started,
        _ => false,
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

#[cfg(unix)]
fn exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be
    // signalled; nothing is sent.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn exists(_: u32) -> bool {
    true
}

/// When process `pid` started (Linux: field 22 of /proc/PID/stat, in clock
/// ticks after boot); `None` where that cannot be read.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_child_is_dead() {
        assert!(!is_dead(&me()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Holder { pid, ..me() };
        assert!(is_dead(&gone));
        let reused = Holder {
            started: me().started + 1,
            ..me()
        };
        assert!(
            is_dead(&reused),
            "a pid whose process started at another time"
        );
        let elsewhere = Holder {
            host: "another-host".into(),
            pid,
            started: 0,
        };
        assert!(!is_dead(&elsewhere));
    }
}
