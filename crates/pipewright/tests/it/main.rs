//! The `pipewright` command, run as a separate process the way people and CI run it.

mod cli;
mod crash;
mod delivery_crash;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    // Keep the test independent of the developer's environment.
    cmd.env_remove("PIPEWRIGHT_CONFIG_FILE")
        .env_remove("PIPEWRIGHT_DATABASE__URL")
        .env("PIPEWRIGHT_LOG__LEVEL", "warn");
    cmd
}

pub fn db_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("pw.db").display())
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Creates a token with the CLI and returns its secret.
pub fn create_token(db: &str, role: &str) -> String {
    let out = run(&[
        "--database",
        db,
        "token",
        "create",
        "--name",
        "test",
        "--role",
        role,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    text.split_whitespace()
        .find(|w| w.starts_with("pw_"))
        .expect("a secret is printed")
        .to_owned()
}

/// A `pipewright serve` child process; killed (SIGKILL) when dropped.
#[allow(missing_debug_implementations)]
pub struct Server {
    pub child: Child,
    pub base: String,
    /// What the command printed before it started listening.
    pub printed: Vec<String>,
}

impl Server {
    pub fn start(db: &str) -> Server {
        Self::run(&["--database", db, "serve", "--listen", "127.0.0.1:0"])
    }

    /// Runs `pipewright ARGS` and waits until it prints the address it listens on.
    pub fn run(args: &[&str]) -> Server {
        let mut child = bin()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let base = loop {
            let line = lines
                .next()
                .expect("the server printed its address")
                .unwrap();
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.trim().to_owned();
            }
            printed.push(line);
        };
        Server {
            child,
            base,
            printed,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
