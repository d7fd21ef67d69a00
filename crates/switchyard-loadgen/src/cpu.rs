//! CPU time of a process, all threads together, from `/proc/<pid>/stat`.

use std::time::Duration;

use anyhow::{bail, Context};

/// Clock ticks per second of the `utime` and `stime` fields. Linux reports them in USER_HZ,
/// which is 100 on every architecture this tool builds for (`getconf CLK_TCK` prints it).
const USER_HZ: u64 = 100;

/// Returns the user plus system CPU time that process `pid` has used so far. The resolution is
/// 10 ms.
pub fn process_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {path}; is process {pid} running?"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("invalid contents of {path}"))?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// Returns utime + stime, fields 14 and 15 of `stat`. The second field, the command name, may
/// contain spaces and parentheses, so the fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        bail!("no `)` after the command name");
    };
    // After the name come field 3 (state) onwards, so utime is the 12th of these.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("fewer than 15 fields");
    };
    let utime: u64 = utime.parse().context("utime is not a number")?;
    let stime: u64 = stime.parse().context("stime is not a number")?;
    Ok(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_with_spaces_and_parentheses_is_skipped() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 325);
    }

    #[test]
    fn truncated_stat_is_rejected() {
        assert!(parse_cpu_ticks("1 (x) S 1 2 3").is_err());
    }

    #[test]
    fn own_process_is_readable() {
        assert!(process_cpu_time(std::process::id()).is_ok());
    }
}
