//! CPU time and memory of the measured server processes, read from `/proc`.

use std::fs;
use std::str::FromStr;

use anyhow::{bail, Context};

/// A server process to measure, given on the command line as `NAME=PID`.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Label in the output, for example `switchyard`, `node` or `redis`.
    pub name: String,
    /// Process id.
    pub pid: u32,
}

impl FromStr for Measured {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let Some((name, pid)) = text.split_once('=') else {
            bail!("invalid process {text:?}; expected NAME=PID, for example node=1234");
        };
        let pid = pid
            .parse()
            .with_context(|| format!("invalid process id in {text:?}"))?;
        Ok(Measured {
            name: name.to_owned(),
            pid,
        })
    }
}

/// Returns the CPU time of `pid` in seconds: user plus system time from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name in brackets may contain spaces, so fields are counted after it.
    // utime and stime are fields 14 and 15, the 12th and 13th after the closing bracket.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected format of {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        let field = fields
            .get(index)
            .with_context(|| format!("{path} has too few fields"))?;
        Ok(field.parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 / clock_ticks_per_second())
}

/// Resident and proportional set size of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// `VmRSS` from `/proc/<pid>/status`.
    pub rss_kib: u64,
    /// `Pss` from `/proc/<pid>/smaps_rollup`, which splits shared pages among their users.
    pub pss_kib: u64,
}

/// Reads the memory of `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    Ok(Memory {
        rss_kib: field_kib(&status, "VmRSS:").context("VmRSS missing")?,
        pss_kib: field_kib(&rollup, "Pss:").context("Pss missing")?,
    })
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Returns the kernel's clock ticks per second for `/proc/<pid>/stat`. Linux reports these
/// times in USER_HZ, which is 100 on every architecture it supports.
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_parses_name_and_pid() {
        let measured: Measured = "node=42".parse().unwrap();
        assert_eq!(measured.name, "node");
        assert_eq!(measured.pid, 42);
        assert!("node".parse::<Measured>().is_err());
        assert!("node=x".parse::<Measured>().is_err());
    }

    #[test]
    fn own_process_has_cpu_and_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let memory = memory(pid).unwrap();
        assert!(memory.rss_kib > 0);
        assert!(memory.pss_kib > 0);
    }

    #[test]
    fn field_is_read_in_kib() {
        let status = "Name:\tx\nVmRSS:\t  1234 kB\n";
        assert_eq!(field_kib(status, "VmRSS:"), Some(1234));
        assert_eq!(field_kib(status, "VmHWM:"), None);
    }
}
