//! External programs of the CSI layer (blkid, mkfs, resize2fs, xfs_growfs) run
//! through the project's one runner, `lvmpin_lvm::run_program`: argument vectors
//! only, stderr captured, and a deadline after which the process group is killed
//! so a hung mkfs cannot pin a kubelet call forever. This module only maps its
//! results to the CSI error kinds.

use std::ffi::OsString;
use std::time::Duration;

use super::error::{Error, Result};

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<lvmpin_lvm::Output> for Output {
    fn from(out: lvmpin_lvm::Output) -> Self {
        Self {
            code: out.code,
            stdout: out.stdout,
            stderr: out.stderr.trim().to_string(),
        }
    }
}

/// Runs the program and returns its output whatever the exit status.
pub fn run_unchecked(program: &str, args: &[OsString], timeout: Duration) -> Result<Output> {
    run_program(program, args, timeout).map(Output::from)
}

/// Runs the program and turns a non-zero exit into `Error::Command`.
pub fn run(program: &str, args: &[OsString], timeout: Duration) -> Result<Output> {
    let out = run_program(program, args, timeout)?;
    if out.success() {
        return Ok(out.into());
    }
    let status = match out.code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".into(),
    };
    Err(Error::Command {
        command: out.command.clone(),
        status,
        stderr: Output::from(out).stderr,
    })
}

fn run_program(program: &str, args: &[OsString], timeout: Duration) -> Result<lvmpin_lvm::Output> {
    lvmpin_lvm::run_program(program.as_ref(), args, &[], timeout).map_err(|e| match e {
        lvmpin_lvm::Error::Timeout { command, after } => Error::CommandTimeout {
            command,
            timeout: after,
        },
        lvmpin_lvm::Error::Io { command, source } => Error::Command {
            command,
            status: "not started".into(),
            stderr: source.to_string(),
        },
        other => Error::Lvm(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn status_and_output() {
        let ok = run(
            "sh",
            &a(&["-c", "echo hi; echo err >&2"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(ok.stdout, "hi\n");
        assert_eq!(ok.stderr, "err");
        let e = run(
            "sh",
            &a(&["-c", "echo nope >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("exit code 3") && msg.contains("nope"), "{msg}");
        assert!(run("/nonexistent/tool", &[], Duration::from_secs(5)).is_err());
    }

    #[test]
    fn timeout_kills() {
        let start = std::time::Instant::now();
        let e = run("sleep", &a(&["30"]), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, Error::CommandTimeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
