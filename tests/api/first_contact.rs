//! What a newcomer gets wrong first: each is one line saying what to do, and exit code 2.

use std::process::{Command, Output};

fn recur(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recur"))
        .current_dir(dir)
        .env_remove("RECUR_DATABASE_URL")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run recur")
}

/// Exit code 2 and a single line on stderr containing `says`.
fn refused(out: &Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(says), "{err}");
}

#[test]
fn unknown_environment_variables_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = recur(
        dir.path(),
        &[
            ("RECUR_HOME", "/opt/recur"),
            ("RECUR_DATABASE__MAX_CONNECTIONS", "3"),
        ],
        &["migrate"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ignoring RECUR_HOME"), "{err}");
    assert!(!err.contains("RECUR_DATABASE__MAX_CONNECTIONS"), "{err}");
    // A key the file gets wrong stays an error.
    std::fs::write(
        dir.path().join("typo.toml"),
        "[database]\nmax_conections = 3\n",
    )
    .unwrap();
    refused(
        &recur(dir.path(), &[], &["--config", "typo.toml", "migrate"]),
        "max_conections",
    );
}

#[test]
fn configuration_files_that_are_not() {
    let dir = tempfile::tempdir().unwrap();
    refused(
        &recur(dir.path(), &[], &["--config", ".", "migrate"]),
        "is a directory",
    );
    refused(
        &recur(dir.path(), &[], &["--config", "nope.toml", "migrate"]),
        "does not exist",
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "bind = \"127.0.0.1:1\"\n[database\n",
    )
    .unwrap();
    refused(
        &recur(dir.path(), &[], &["--config", "bad.toml", "migrate"]),
        "bad.toml",
    );
}

#[test]
fn databases_that_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("var"), "a file where a directory goes").unwrap();
    refused(&recur(dir.path(), &[], &["migrate"]), "var is a file");
    std::fs::remove_file(dir.path().join("var")).unwrap();
    std::fs::create_dir(dir.path().join("var")).unwrap();
    std::fs::write(dir.path().join("var/recur.db"), vec![7u8; 8192]).unwrap();
    refused(
        &recur(dir.path(), &[], &["migrate"]),
        "is not a SQLite database",
    );
    // Nothing listens on port 1: refused at once, not after a pool timeout.
    refused(
        &recur(
            dir.path(),
            &[],
            &[
                "--database-url",
                "postgres://postgres@127.0.0.1:1/test",
                "migrate",
            ],
        ),
        "cannot reach PostgreSQL",
    );
}

#[test]
fn a_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    refused(
        &recur(dir.path(), &[], &["serve", "--bind", &bind]),
        "is in use by another program",
    );
}
