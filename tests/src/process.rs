//! Child processes that cannot outlive the test process.
//!
//! Rust's test harness never runs destructors of statics, and a killed test binary runs
//! none at all. Each server is therefore started through `sh` holding a pipe from the
//! test process: when the test process ends for any reason, the pipe closes and the
//! shell stops the server.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
};

/// A running server; stopped on drop.
pub struct Server {
    child: Child,
    _lifeline: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `command` (program + arguments + environment as configured by the caller)
    /// so that it dies with the test process. A `LAB_CLEANUP_DIR` in its environment is
    /// removed once it has exited. `ready` is called with each line the
    /// server prints (stdout and stderr); the call returns once it returns `Some`.
    pub fn start<T>(
        command: &mut Command,
        mut ready: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<(Self, T)> {
        let program = command.get_program().to_owned();
        // fd 3 keeps the pipe: a background job's own stdin is /dev/null in `sh`.
        let script = r#"exec 3<&0
"$@" </dev/null & pid=$!
(cat <&3 >/dev/null; kill $pid 2>/dev/null) &
wait $pid
status=$?
if [ -n "${LAB_CLEANUP_DIR:-}" ]; then rm -rf "$LAB_CLEANUP_DIR"; fi
exit $status"#;
        let mut wrapped = Command::new("sh");
        wrapped
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&program)
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let mut child = wrapped
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| anyhow::anyhow!("starting {program:?}: {error}"))?;
        let lifeline = child.stdin.take();
        let output = Arc::new(Mutex::new(String::new()));
        let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
        drain(
            child.stdout.take().expect("piped"),
            output.clone(),
            line_tx.clone(),
        );
        drain(child.stderr.take().expect("piped"), output.clone(), line_tx);

        let mut server = Self {
            child,
            _lifeline: lifeline,
            output,
        };
        loop {
            match line_rx.recv_timeout(std::time::Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(value) = ready(&line) {
                        return Ok((server, value));
                    }
                }
                Err(_) => {
                    let status = server.child.try_wait().ok().flatten();
                    anyhow::bail!(
                        "{program:?} did not become ready (exit status: {status:?}); its output:\n{}",
                        server.output()
                    );
                }
            }
        }
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// The wrapped server's process id (the child of the `sh` wrapper).
    pub fn shell_pid(&self) -> u32 {
        self.child.id()
    }

    /// The wrapped server's own process id, for signals and `/proc` sampling: the child
    /// of the `sh` wrapper that is not its watcher subshell (which is an `sh`).
    pub fn pid(&self) -> Option<u32> {
        let shell = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() != "sh")
            })
    }

    /// Sends SIGTERM to the server and waits for it to exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        signal_children(self.child.id(), "TERM");
        Ok(self.child.wait()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        signal_children(self.child.id(), "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signals the processes whose parent is `shell`: the wrapped server (and the watcher).
fn signal_children(shell: u32, signal: &str) {
    let _ = Command::new("pkill")
        .arg(format!("-{signal}"))
        .arg("-P")
        .arg(shell.to_string())
        .status();
}

fn drain(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    lines: std::sync::mpsc::Sender<String>,
) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            {
                let mut output = output.lock().expect("output lock");
                output.push_str(&line);
                output.push('\n');
            }
            let _ = lines.send(line);
        }
    });
}
