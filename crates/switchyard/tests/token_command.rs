//! `switchyard token` signs only tokens that the server would accept: it rejects an empty room,
//! identity, key or secret and a zero lifetime with an error and exit status 1.

use std::process::Command;

/// Runs `switchyard token` with the given arguments and returns (success, stdout, stderr).
fn token(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("token")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run switchyard token");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn valid_arguments_print_token() {
    let (success, stdout, stderr) = token(&[
        "--api-key",
        "k",
        "--api-secret",
        "s",
        "--room",
        "demo",
        "--identity",
        "ada",
    ]);
    assert!(success, "{stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3, "{stdout}");
}

#[test]
fn invalid_arguments_are_rejected() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--api-key",
                "k",
                "--api-secret",
                "s",
                "--room",
                "",
                "--identity",
                "a",
            ],
            "--room",
        ),
        (
            &[
                "--api-key",
                "k",
                "--api-secret",
                "s",
                "--room",
                "r",
                "--identity",
                "",
            ],
            "--identity",
        ),
        (
            &[
                "--api-key",
                "k",
                "--api-secret",
                "s",
                "--room",
                "r",
                "--identity",
                "a\u{7}",
            ],
            "--identity",
        ),
        (
            &[
                "--api-key",
                "k",
                "--api-secret",
                "",
                "--room",
                "r",
                "--identity",
                "a",
            ],
            "--api-secret",
        ),
        (
            &[
                "--api-key",
                "k",
                "--api-secret",
                "s",
                "--room",
                "r",
                "--identity",
                "a",
                "--ttl",
                "0",
            ],
            "--ttl",
        ),
    ];
    for (args, flag) in cases {
        let (success, stdout, stderr) = token(args);
        assert!(!success, "{args:?} printed {stdout}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
