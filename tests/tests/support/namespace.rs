//! Confinement of every scenario to a network namespace whose only interface is loopback, so
//! ICE can neither gather nor probe an address outside this machine.
//!
//! A test that finds other interfaces re-runs its own test binary, filtered to itself, under
//! `unshare -n` (`unshare -rn` when not root) and checks that the child run passed.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Set in the child run's environment. A child that still finds other interfaces fails instead
/// of starting yet another namespace.
const CHILD_MARKER: &str = "SWITCHYARD_E2E_LOOPBACK_CHILD";

/// Upper bound on one child run. Each scenario bounds its own waits far below this, so only a
/// hung process reaches it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Interval at which the parent checks whether the child has exited.
const CHILD_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `scenario` when `lo` is the only network interface in this process's namespace.
/// Otherwise runs the test named `test_name` again inside a new loopback-only network namespace
/// and asserts that it passed there.
///
/// `test_name` must be the test function's name, because the child is filtered with `--exact`.
pub fn run_on_loopback_only(test_name: &str, scenario: impl FnOnce()) {
    let interfaces = interface_names();
    if interfaces.iter().all(|name| name == "lo") {
        scenario();
        return;
    }
    assert!(
        std::env::var_os(CHILD_MARKER).is_none(),
        "the new network namespace still shows interfaces {interfaces:?}; only `lo` was expected"
    );

    let output = run_child(test_name);
    // Printed through the test harness, so it shows when this test fails or runs with
    // `--nocapture`.
    println!("--- output of {test_name} in the loopback-only namespace ---");
    println!("{}", output.stdout);
    println!("{}", output.stderr);
    let status = match output.status {
        Some(status) if status.success() => return,
        Some(status) => status.to_string(),
        None => format!("killed after {CHILD_TIMEOUT:?}"),
    };
    panic!(
        "{test_name} failed inside the loopback-only network namespace ({status}); its output \
         is printed above"
    );
}

/// Returns the names of the network interfaces in this process's network namespace.
///
/// Reads `/proc/self/net/dev` rather than `/sys/class/net`: sysfs lists the interfaces of the
/// namespace it was mounted in, so after `unshare -n` it still shows the host's interfaces.
fn interface_names() -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/net/dev")
        .expect("failed to read /proc/self/net/dev; these tests need Linux with procfs");
    // Two header lines, then one `name: counters...` line per interface.
    table
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .collect()
}

/// Output of the child run. `status` is `None` when the child was killed after
/// [`CHILD_TIMEOUT`].
struct ChildOutput {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

fn run_child(test_name: &str) -> ChildOutput {
    let test_binary =
        std::env::current_exe().expect("failed to find the path of the running test binary");
    // Without root, a user namespace (`-r`) grants the capability to create the network one.
    let flags = if is_root() { "-n" } else { "-rn" };
    let mut child = Command::new("unshare")
        .arg(flags)
        .args(["sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
        .arg(test_binary)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start `unshare`; install util-linux and iproute2");

    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let status = wait_bounded(&mut child);
    ChildOutput {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Drains a pipe on its own thread, so a child that writes a lot never blocks on a full pipe.
fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            if let Err(error) = pipe.read_to_end(&mut bytes) {
                text.push_str(&format!("(reading the child's output failed: {error})\n"));
            }
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        text
    })
}

/// Waits for the child to exit, and kills it by its PID after [`CHILD_TIMEOUT`]. `unshare` and
/// `sh` both exec, so that PID is the test binary itself.
fn wait_bounded(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => thread::sleep(CHILD_POLL_INTERVAL),
            Err(error) => panic!("failed to wait for the child test run: {error}"),
        }
    }
    eprintln!("child test run did not exit within {CHILD_TIMEOUT:?}; killing it");
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Returns true when the effective user id is 0, read from the `Uid:` line of
/// `/proc/self/status` (real, effective, saved and file-system ids).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}
