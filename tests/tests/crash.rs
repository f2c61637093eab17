//! Crash safety: a training process is killed with SIGKILL at random moments (mid-epoch,
//! and as soon as a checkpoint's temporary file appears, i.e. mid-write), five times in a
//! row, each time resumed with `--resume`. After every kill the run directory must be
//! consistent: the checkpoint `latest.json` names verifies and loads into the plugin, every
//! file with a final checkpoint name is whole, `metrics.jsonl` parses, and the resumed
//! process starts at the epoch after the last complete checkpoint. Finally the run finishes
//! with every epoch recorded exactly once and the same losses as an uninterrupted run, bit for
//! bit. This runs for rotation (backbone, head, optimizer) and for DINO, whose checkpoints also
//! carry the momentum teacher and the centre (task state), and whose step depends on the
//! schedule (teacher momentum, temperature warm-up, the last layer frozen in epoch 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pretext_core::run::RunStatus;
use pretext_tests::process::{pretext_command, wait_timeout};
use pretext_tests::{RunCheck, epoch_losses, pretext, temp_dir};
use rand::{Rng, SeedableRng};

const EPOCHS: u64 = 16;
const KILLS: usize = 5;

/// How a kill moment is chosen. Moments are counted in training progress, not wall time,
/// so they land where intended on a fast machine and a slow one alike.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// A random delay after this process appended its `steps`-th metrics line (one per step).
    MidEpoch { steps: usize, jitter: Duration },
    /// As soon as a temporary file shows up in `checkpoints/` (a checkpoint being written).
    CheckpointWrite,
}

/// Complete lines in `metrics.jsonl` (0 before it exists).
fn metric_lines(run_dir: &Path) -> usize {
    std::fs::read(run_dir.join("metrics.jsonl")).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

fn temp_file_in(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|entries| entries.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with('.')))
}

/// Starts `pretext ARGS`, kills it at `moment` (unless it exits first) and returns its stderr
/// and whether it was killed.
fn run_and_kill(args: &[&str], run_dir: &Path, moment: Moment) -> (String, bool, &'static str) {
    let mut child = pretext_command(args, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let checkpoints = run_dir.join("checkpoints");
    let metrics_at_start = metric_lines(run_dir);
    let how;
    loop {
        if child.try_wait().unwrap().is_some() {
            return (reader.join().unwrap(), false, "exited before the kill");
        }
        assert!(Instant::now() < deadline, "the kill moment {moment:?} never came");
        match moment {
            Moment::MidEpoch { steps, jitter } => {
                if metric_lines(run_dir) >= metrics_at_start + steps {
                    std::thread::sleep(jitter);
                    how = "mid-epoch";
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Moment::CheckpointWrite => {
                if temp_file_in(&checkpoints) {
                    how = "while a checkpoint file was being written";
                    break;
                }
                // Temporary files live for about as long as an fsync; look often.
                std::thread::yield_now();
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix.
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("a killed process exits");
    assert!(!status.success());
    (reader.join().unwrap(), true, how)
}

/// The first epoch a run's stderr says it trains ("epochs K..=N").
fn first_epoch(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.starts_with("training "))?;
    let after = line.split("epochs ").nth(1)?;
    after.split("..=").next()?.parse().ok()
}

/// Everything that must hold after any crash; returns the latest complete epoch (0: none).
fn check_after_crash(run: &RunCheck) -> u64 {
    // Every final-named checkpoint file is whole (temporary dot-files are ignored).
    let checkpoints = run.verified_checkpoints();
    // metrics.jsonl parses, a torn last line aside, and its epoch ends are in order.
    let ends: Vec<u64> = epoch_losses(&run.metrics()).iter().map(|(e, _)| *e).collect();
    assert!(ends.windows(2).all(|w| w[1] == w[0] + 1), "epoch ends out of order: {ends:?}");
    // A kill between a checkpoint's JSON and latest.json leaves latest one behind; never more.
    // Before the first latest.json that means the first checkpoint may already be whole.
    let newest = checkpoints.last().map_or(0, |m| m.epoch);
    if !run.store.layout.latest().exists() {
        assert!(newest <= 1, "checkpoint {newest} exists but latest.json does not");
        return 0;
    }
    let (latest, weights) = run.latest();
    assert!(
        latest.epoch == newest || latest.epoch + 1 == newest,
        "latest.json names {} but {newest} exists",
        latest.epoch
    );
    run.load_into_plugin(&weights);
    latest.epoch
}

#[test]
fn sigkill_at_random_moments_then_resume() {
    kill_and_resume("rotation", "", 20_240_611);
}

#[test]
fn sigkill_a_teacher_task_then_resume_with_teacher_and_centre() {
    // A small head keeps the run short; the warm-up spans the run so every epoch's
    // temperature differs.
    let task = "[task_config]\nhidden_dim = 32\nbottleneck_dim = 16\nout_dim = 64\nlocal_crops = 2\nwarmup_teacher_temp_epochs = 16\n";
    kill_and_resume("dino", task, 20_261_130);
}

/// Kills a `task` run `KILLS` times and resumes it to the end; `extra_config` is appended to
/// the run's TOML configuration.
fn kill_and_resume(task: &str, extra_config: &str, seed: u64) {
    let tmp = temp_dir();
    let run_dir = tmp.path().join("run");
    let config = tmp.path().join("crash.toml");
    // One metrics line per step as well, so a kill can also land mid-append.
    std::fs::write(&config, format!("log_every = 1\n{extra_config}")).unwrap();
    let epochs = EPOCHS.to_string();
    let fresh = [
        "train",
        "--config",
        config.to_str().unwrap(),
        "--task",
        task,
        "--width",
        "4",
        "--epochs",
        &epochs,
        "--batch-size",
        "16",
        "--limit",
        "96",
        "--checkpoint-every",
        "1",
        "--seed",
        "7",
        "--out",
        run_dir.to_str().unwrap(),
    ];
    let resume = ["train", "--resume", "--out", run_dir.to_str().unwrap()];
    let run = RunCheck::new(&run_dir);

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut done = 0;
    let mut kills = 0;
    let mut started_fresh = false;
    while kills < KILLS {
        let moment = if kills % 2 == 1 {
            Moment::CheckpointWrite
        } else {
            Moment::MidEpoch {
                steps: rng.random_range(1..=12),
                jitter: Duration::from_micros(rng.random_range(0..20_000)),
            }
        };
        let args: &[&str] = if started_fresh { &resume } else { &fresh };
        started_fresh = true;
        let (stderr, killed, how) = run_and_kill(args, &run_dir, moment);
        assert!(!stderr.contains("error:") && !stderr.contains("panicked"), "{stderr}");
        if let Some(first) = first_epoch(&stderr) {
            assert_eq!(first, done + 1, "resume must continue after the last complete checkpoint:\n{stderr}");
        }
        let latest = check_after_crash(&run);
        assert!(latest >= done, "the latest checkpoint went back from {done} to {latest}");
        eprintln!("kill {}: {moment:?}, {how}; latest complete epoch {done} -> {latest}", kills + 1);
        done = latest;
        assert!(killed, "the run finished before kill {} (make it longer):\n{stderr}", kills + 1);
        kills += 1;
    }
    assert!(done < EPOCHS, "the kills left nothing to resume");

    let out = pretext(&resume);
    out.assert_success();
    assert_eq!(first_epoch(&out.stderr), Some(done + 1), "{}", out.stderr);
    let info = run.info();
    assert_eq!((info.status, info.epochs_done), (RunStatus::Completed, EPOCHS));
    let ends: Vec<u64> = epoch_losses(&run.metrics()).iter().map(|(e, _)| *e).collect();
    assert_eq!(ends, (1..=EPOCHS).collect::<Vec<_>>(), "each epoch is recorded exactly once");
    let steps: Vec<u64> = run.metrics().iter().map(|r| r.step).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "metrics steps must increase: {steps:?}");
    let epochs: Vec<u64> = run.verified_checkpoints().iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, (1..=EPOCHS).collect::<Vec<_>>());
    let (latest, weights) = run.latest();
    assert_eq!(latest.epoch, EPOCHS);
    run.load_into_plugin(&weights);
    let interrupted = epoch_losses(&run.metrics());
    for (epoch, loss) in &interrupted {
        assert!(loss.is_finite(), "epoch {epoch}: {loss}");
    }

    // Batch order and augmentation depend only on (seed, epoch, batch) and the optimizer
    // state is in the checkpoint, so the interrupted run retraced an uninterrupted one.
    let straight_dir = tmp.path().join("straight");
    let mut straight_args = fresh.to_vec();
    let last = straight_args.len() - 1;
    straight_args[last] = straight_dir.to_str().unwrap();
    pretext(&straight_args).assert_success();
    let straight = epoch_losses(&RunCheck::new(&straight_dir).metrics());
    assert_eq!(interrupted, straight, "the resumed run's epoch losses differ from an uninterrupted run's");
}

#[test]
fn a_run_killed_before_its_first_checkpoint_starts_over_on_resume() {
    let tmp = temp_dir();
    let run_dir = tmp.path().join("run");
    let config = tmp.path().join("early.toml");
    std::fs::write(&config, "log_every = 1\n").unwrap();
    let fresh = [
        "train",
        "--config",
        config.to_str().unwrap(),
        "--task",
        "rotation",
        "--width",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--limit",
        "96",
        "--out",
        run_dir.to_str().unwrap(),
    ];
    // Two of the six steps of epoch 1 are done: no checkpoint exists yet.
    let (stderr, killed, _) = run_and_kill(&fresh, &run_dir, Moment::MidEpoch { steps: 2, jitter: Duration::ZERO });
    assert!(killed, "{stderr}");
    let run = RunCheck::new(&run_dir);
    assert_eq!(check_after_crash(&run), 0);
    assert!(run_dir.join("run.json").is_file());

    let out = pretext(&["train", "--resume", "--out", run_dir.to_str().unwrap()]);
    out.assert_success();
    assert_eq!(first_epoch(&out.stderr), Some(1), "{}", out.stderr);
    run.assert_complete_files(2);
    let steps: Vec<u64> = run.metrics().iter().map(|r| r.step).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "the killed attempt's metrics must be gone: {steps:?}");
}
