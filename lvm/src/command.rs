//! The one place lvmpin executes external programs (lvm2 here, and mkfs, blkid
//! and the grow tools through `run_program` in the CSI layer): an argument vector
//! (never a shell string), `LC_ALL=C` so messages are stable, captured output, a
//! deadline, and on timeout the whole process group is killed so no orphaned
//! process survives (TopoLVM #1163).

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// How long to wait for a killed group to be reaped before giving up on it.
const REAP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(crate) struct Runner {
    pub binary: PathBuf,
    pub timeout: Duration,
}

/// A finished command, successful or not.
#[derive(Debug, Clone)]
pub struct Output {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub(crate) fn into_failure(self) -> Error {
        Error::CommandFailed {
            command: self.command,
            code: self.code,
            stderr: self.stderr.trim().to_string(),
        }
    }
}

impl Runner {
    /// Runs lvm to completion or to its timeout. A non-zero exit is not an
    /// error here: callers classify stderr first.
    pub fn run(&self, args: &[String]) -> Result<Output> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        // lvm complains about every inherited descriptor otherwise.
        let env = [("LVM_SUPPRESS_FD_WARNINGS", "1")];
        run_program(self.binary.as_os_str(), &args, &env, self.timeout)
    }
}

/// Runs any program the way lvmpin runs every external command: an argument
/// vector (never a shell string), `LC_ALL=C` so messages are stable, captured
/// output, its own process group, and at the deadline the whole group is killed
/// and reaped. A non-zero exit is returned as an `Output`, not an error; only a
/// failure to start (`Error::Io`) or the timeout (`Error::Timeout`) is.
pub fn run_program(
    program: &OsStr,
    args: &[OsString],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output> {
    let command = command_line(program, args);
    let started = Instant::now();
    let io_error = |source: std::io::Error| Error::Io {
        command: command.clone(),
        source: Arc::new(source),
    };
    // As an OsStr, not a Path: duct would turn a bare "lvm" Path into "./lvm"
    // instead of looking it up in PATH.
    let mut expression = duct::cmd(program, args).env("LC_ALL", "C");
    for (key, value) in env {
        expression = expression.env(key, value);
    }
    let handle = expression
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .before_spawn(|cmd| {
            // Its own group, so that a timeout can kill it and anything it forked.
            cmd.process_group(0);
            Ok(())
        })
        .start()
        .map_err(io_error)?;
    let deadline = started
        .checked_add(timeout)
        .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
    match handle.wait_deadline(deadline).map_err(io_error)? {
        Some(out) => {
            let output = Output {
                command,
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            tracing::debug!(
                command = %output.command,
                code = ?output.code,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "command finished"
            );
            Ok(output)
        }
        None => {
            for pid in handle.pids() {
                // The group id equals the leader's pid (process_group(0) above).
                let group = Pid::from_raw(pid as i32);
                if let Err(errno) = killpg(group, Signal::SIGKILL) {
                    tracing::warn!(%command, pid, %errno, "could not kill timed-out process group");
                }
            }
            if !matches!(
                handle.wait_deadline(Instant::now() + REAP_GRACE),
                Ok(Some(_))
            ) {
                tracing::error!(%command, "timed-out command still not reaped after SIGKILL");
            }
            tracing::warn!(%command, ?timeout, "command timed out and was killed");
            Err(Error::Timeout {
                command,
                after: timeout,
            })
        }
    }
}

/// The command as an operator would type it, for errors and logs.
pub(crate) fn command_line(program: &OsStr, args: &[OsString]) -> String {
    let mut line = program.to_string_lossy().into_owned();
    for arg in args {
        line.push(' ');
        let arg = arg.to_string_lossy();
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@%#&!".contains(c));
        if plain {
            line.push_str(&arg);
        } else {
            line.push_str(&format!("{arg:?}"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(binary: &str, timeout: Duration) -> Runner {
        Runner {
            binary: binary.into(),
            timeout,
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn captures_output_code_and_environment() {
        let out = runner("/bin/sh", Duration::from_secs(10))
            .run(&args(&["-c", "echo \"$LC_ALL\"; echo oops >&2; exit 3"]))
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "C\n");
        assert_eq!(out.stderr, "oops\n");
        assert!(!out.success());
        let err = out.into_failure().to_string();
        assert!(err.contains("exit code 3") && err.contains("oops"), "{err}");
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        let out = runner("/bin/echo", Duration::from_secs(10))
            .run(&args(&["$(id)", "a;b", "*"]))
            .unwrap();
        assert_eq!(out.stdout, "$(id) a;b *\n");
    }

    #[test]
    fn missing_binary_is_an_io_error_naming_the_command() {
        let err = runner("/nonexistent/lvm", Duration::from_secs(10))
            .run(&args(&["lvs"]))
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/lvm lvs"), "{err}");
    }

    #[test]
    fn command_line_quotes_only_when_needed() {
        assert_eq!(
            command_line(
                "lvm".as_ref(),
                &args(&["lvs", "--size", "1b", "a b", ""])
                    .into_iter()
                    .map(OsString::from)
                    .collect::<Vec<_>>()
            ),
            "lvm lvs --size 1b \"a b\" \"\""
        );
    }
}
