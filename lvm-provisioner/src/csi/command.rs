//! The one place the CSI layer runs external programs: argument vectors only
//! (never a shell), stderr captured, and a deadline after which the process is
//! killed so a hung mkfs cannot pin a kubelet call forever.

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

fn display(program: &str, args: &[OsString]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs the program and returns its output whatever the exit status.
pub fn run_unchecked(program: &str, args: &[OsString], timeout: Duration) -> Result<Output> {
    let command = display(program, args);
    let handle = duct::cmd(program, args)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .map_err(|e| Error::Command {
            command: command.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    let waited = handle.wait_timeout(timeout).map_err(|e| Error::Command {
        command: command.clone(),
        status: "wait failed".into(),
        stderr: e.to_string(),
    })?;
    let Some(out) = waited else {
        // Kill, then reap, so no zombie or orphan is left behind.
        let _ = handle.kill();
        return Err(Error::CommandTimeout { command, timeout });
    };
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Runs the program and turns a non-zero exit into `Error::Command`.
pub fn run(program: &str, args: &[OsString], timeout: Duration) -> Result<Output> {
    let out = run_unchecked(program, args, timeout)?;
    if out.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            command: display(program, args),
            status: match out.code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            },
            stderr: out.stderr,
        })
    }
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
