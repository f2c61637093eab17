//! Finding and building the artifacts under test, and running them with a timeout.
//!
//! Every command gets a bounded wall-clock time; when it runs over, it is killed and the test
//! fails with whatever it printed. The child's environment is cleaned of the variables that
//! change where plugins and datasets are looked for, so a developer's shell cannot change a
//! test's outcome; tests that want them pass them explicitly.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Variables the child never inherits (tests set them explicitly when they need them).
const HERMETIC: [&str; 4] = ["PRETEXT_PLUGIN_PATH", "PRETEXT_DATA", "PRETEXT_WEB_DIST", "RUST_BACKTRACE"];

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").to_path_buf()
}

/// `target/release`, found from the running test executable (`target/release/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable");
    let deps = exe.parent().expect("the test executable has a folder");
    let dir =
        if deps.file_name().is_some_and(|n| n == "deps") { deps.parent().expect("deps has a parent") } else { deps };
    assert!(
        dir.file_name().is_some_and(|n| n == "release"),
        "the end-to-end tests must run in the release profile (cargo test --release); found {}",
        dir.display()
    );
    dir.to_path_buf()
}

/// Builds the workspace (binary, plugins, the faulty fixture plugin) once per test binary.
/// Cargo's build lock is free while tests run, so this is a no-op when `cargo test` just
/// built everything. With `PRETEXT_E2E_NO_BUILD=1` the artifacts already in the target
/// folder are used as they are (CI that built them in an earlier step).
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("PRETEXT_E2E_NO_BUILD").is_some_and(|v| v == "1") {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--release", "--workspace"]).current_dir(workspace_root());
        // The same features as the test command's build, or this would rebuild without them.
        if cfg!(feature = "mpi") {
            cmd.args(["--features", "mpi"]);
        }
        let out = run_command(cmd, Duration::from_secs(30 * 60));
        assert!(out.success(), "cargo build --release --workspace failed:\n{}", out.stderr);
        for file in [pretext_bin(), faulty_plugin()] {
            assert!(file.is_file(), "{} was not built", file.display());
        }
    });
}

pub fn pretext_bin() -> PathBuf {
    target_dir().join(format!("pretext{}", std::env::consts::EXE_SUFFIX))
}

/// The path of a library built by cargo: `lib<name>.so` on Linux.
pub fn dylib(name: &str) -> PathBuf {
    target_dir().join(format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

/// The fixture plugin of `tests/fixtures/faulty` (not auto-discovered: no `pretext_` prefix).
pub fn faulty_plugin() -> PathBuf {
    dylib("faulty_plugin")
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }

    /// Asserts success, printing both streams otherwise.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "expected success, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts the error contract of a failure after training started: exit code 1 (not a
    /// signal, not an abort), no panic or backtrace text, and exactly one `error:` line, the
    /// last on stderr (progress lines may come before it), mentioning each of `needles`.
    pub fn assert_error_after_progress(&self, needles: &[&str]) -> String {
        assert_eq!(self.code(), Some(1), "expected exit code 1, got {:?}\n--- stderr\n{}", self.status, self.stderr);
        assert_no_panic_text(&self.stderr);
        let lines = self.stderr_lines();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "expected one error line, got:\n{}", self.stderr);
        assert_eq!(lines.last(), errors.first().copied(), "the error must be the last line:\n{}", self.stderr);
        for line in &lines[..lines.len() - 1] {
            assert!(
                ["training ", "epoch ", "note: ", "warning: ", "pixel cache: ", "reading headers ", "decoding "]
                    .iter()
                    .any(|p| line.starts_with(p)),
                "unexpected line before the error: {line}\n{}",
                self.stderr
            );
        }
        let line = *errors[0];
        let lower = line.to_lowercase();
        for needle in needles {
            assert!(lower.contains(&needle.to_lowercase()), "the error does not mention `{needle}`: {line}");
        }
        line.to_string()
    }

    /// Asserts the user-facing error contract: exit code 1 (not a signal, not an abort),
    /// exactly one line on stderr starting with `error:`, no panic or backtrace text, and
    /// the line mentions each of `needles` (case-insensitive). Returns the line.
    pub fn assert_one_line_error(&self, needles: &[&str]) -> String {
        assert_eq!(self.code(), Some(1), "expected exit code 1, got {:?}\n--- stderr\n{}", self.status, self.stderr);
        assert_no_panic_text(&self.stderr);
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{}", self.stderr);
        let line = lines[0];
        assert!(line.starts_with("error: "), "the error line must start with `error: `: {line}");
        let lower = line.to_lowercase();
        for needle in needles {
            assert!(lower.contains(&needle.to_lowercase()), "the error does not mention `{needle}`: {line}");
        }
        line.to_string()
    }
}

/// Fails if `text` looks like a Rust panic report or a backtrace.
pub fn assert_no_panic_text(text: &str) {
    for bad in ["panicked at", "RUST_BACKTRACE", "stack backtrace", "fatal runtime error", "Aborted"] {
        assert!(!text.contains(bad), "output contains `{bad}`:\n{text}");
    }
}

fn reader(mut source: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` at most `timeout`; kills it and returns `None` when it runs over.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("cannot wait for a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` to completion with captured output; a run past `timeout` fails the test.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Output {
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let out = reader(child.stdout.take().expect("piped stdout"));
    let err = reader(child.stderr.take().expect("piped stderr"));
    let status = wait_timeout(&mut child, timeout);
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let Some(status) = status else {
        panic!("{description} ran longer than {timeout:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    };
    Output { status, stdout, stderr }
}

/// A `pretext` command with a hermetic environment plus `envs`.
pub fn pretext_command(args: &[&str], envs: &[(&str, &Path)]) -> Command {
    ensure_built();
    let mut cmd = Command::new(pretext_bin());
    cmd.args(args);
    for var in HERMETIC {
        cmd.env_remove(var);
    }
    cmd.env(pretext_core::data::cache::CACHE_ENV, test_cache_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// `mpirun -q -np RANKS pretext ARGS` with the hermetic environment of [`pretext_command`]:
/// quiet, so that what a rank reports is all that stderr holds, and without binding ranks
/// to cores (a test that compares numbers sets the threads). Open MPI refuses to start as
/// root unless told twice that it is meant (CI runs as root).
pub fn mpirun_command(ranks: usize, args: &[&str]) -> Command {
    let pretext = pretext_command(args, &[]);
    let mut cmd = Command::new("mpirun");
    cmd.args(["-q", "-np", &ranks.to_string(), "--oversubscribe", "--bind-to", "none"])
        .arg(pretext.get_program())
        .args(pretext.get_args());
    for (k, v) in pretext.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    cmd
}

/// The pixel cache of this test binary's `pretext` runs (under `target/release`, emptied
/// when the binary first asks for it), so tests never write to the user's cache.
pub fn test_cache_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let name = exe
            .as_deref()
            .and_then(Path::file_stem)
            .map_or_else(|| "tests".into(), |s| s.to_string_lossy().into_owned());
        let dir = target_dir().join("test-cache").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        dir
    })
    .clone()
}

/// Runs `pretext ARGS` with a 10-minute limit.
pub fn pretext(args: &[&str]) -> Output {
    pretext_with(args, &[], Duration::from_secs(600))
}

/// Runs `pretext ARGS` with extra environment variables and a time limit.
pub fn pretext_with(args: &[&str], envs: &[(&str, &Path)], timeout: Duration) -> Output {
    run_command(pretext_command(args, envs), timeout)
}

/// Compiles one Rust source file as a `cdylib` with plain `rustc` (no dependencies), for
/// fixture plugins that must be broken in ways the SDK cannot express.
pub fn build_rust_fixture(source: &str, out: &Path) {
    let dir = out.parent().expect("the output has a folder");
    let src = dir.join(format!("{}.rs", out.file_stem().expect("a file name").to_string_lossy()));
    std::fs::write(&src, source).expect("cannot write the fixture source");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["--crate-type", "cdylib", "--edition", "2021", "-O"]).arg(&src).arg("-o").arg(out);
    let result = run_command(cmd, Duration::from_secs(300));
    assert!(result.success(), "rustc failed on {}:\n{}", src.display(), result.stderr);
}
