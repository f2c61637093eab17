//! `pretext serve` as an attacker and a careless user meet it: traversal in every spelling,
//! symlinks out of the runs directory, methods other than GET/HEAD, a very long path, and
//! the start-up errors (port taken, viewer not built, no runs directory), and many
//! connections kept open at once. The browser side is tests/web.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;
use std::path::Path;

use pretext_tests::serve::Served;
use pretext_tests::{pretext, temp_dir};

const SECRET: &str = "TOP-SECRET-NOT-FOR-THE-BROWSER";

/// `root/runs/fixture` with the files the viewer reads, a secret beside `runs/`, symlinks
/// pointing at it, and a stand-in viewer folder (the real one is tests/web.rs's business).
fn fixture(root: &Path) {
    let run = root.join("runs/fixture");
    for dir in ["checkpoints", "samples", "embeddings"] {
        std::fs::create_dir_all(run.join(dir)).unwrap();
    }
    std::fs::write(run.join("run.json"), r#"{"format_version": 1}"#).unwrap();
    std::fs::write(run.join("metrics.jsonl"), "").unwrap();
    std::fs::write(run.join("samples/sample-0000.png"), b"\x89PNG fake").unwrap();
    std::fs::write(run.join("config.toml"), "not for the viewer").unwrap();
    std::fs::write(root.join("secret.txt"), SECRET).unwrap();
    std::fs::write(root.join("run.json"), SECRET).unwrap();
    symlink(root.join("secret.txt"), run.join("samples/leak.png")).unwrap();
    symlink(root.join("secret.txt"), run.join("run.jsonl")).unwrap();
    symlink(root, root.join("runs/escape")).unwrap();
    symlink(root, run.join("embeddings/up")).unwrap();
    let dist = root.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    for f in ["index.html", "viewer.js", "viewer_bg.wasm"] {
        std::fs::write(dist.join(f), format!("viewer file {f}")).unwrap();
    }
}

#[test]
fn serves_the_run_files_read_only() {
    let tmp = temp_dir();
    fixture(tmp.path());
    let s = Served::start(&tmp.path().join("runs"), &tmp.path().join("dist"));

    let index = s.request("GET", "/");
    assert_eq!(index.status, 200);
    assert_eq!(index.text(), "viewer file index.html");
    assert_eq!(index.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(s.request("GET", "/viewer_bg.wasm").header("content-type"), Some("application/wasm"));

    // The symlinked folder is not a run.
    let runs = s.request("GET", "/api/runs");
    assert_eq!((runs.status, runs.text().as_str()), (200, r#"{"names":["fixture"]}"#));
    let samples = s.request("GET", "/api/list/fixture/samples?t=1");
    assert_eq!((samples.status, samples.text().as_str()), (200, r#"{"names":["sample-0000.png"]}"#));
    let absent = s.request("GET", "/api/list/fixture/embeddings");
    assert_eq!(absent.text(), r#"{"names":[]}"#, "symlinks are not listed");
    assert_eq!(s.request("GET", "/api/list/nobody/samples").status, 404);

    let file = s.request("GET", "/runs/fixture/run.json");
    assert_eq!((file.status, file.text().as_str()), (200, r#"{"format_version": 1}"#));
    assert_eq!(file.header("cache-control"), Some("no-cache"), "runs being written must be re-read");
    let png = s.request("GET", "/runs/fixture/samples/sample-0000.png");
    assert_eq!((png.status, png.header("content-type")), (200, Some("image/png")));

    let head = s.request("HEAD", "/runs/fixture/run.json");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("21"));
    assert!(head.body.is_empty(), "HEAD has no body");
}

#[test]
fn traversal_and_odd_requests_get_4xx_and_leak_nothing() {
    let tmp = temp_dir();
    fixture(tmp.path());
    let s = Served::start(&tmp.path().join("runs"), &tmp.path().join("dist"));

    let long = format!("/runs/fixture/{}", "a".repeat(100_000));
    let attempts: Vec<(&str, &str)> = vec![
        ("GET", "/../"),
        ("GET", "/../secret.txt"),
        ("GET", "/%2e%2e%2f"),
        ("GET", "/%2e%2e/secret.txt"),
        ("GET", "/runs/%2e%2e/run.json"),
        ("GET", "/runs/fixture/%2e%2e/%2e%2e/secret.txt"),
        ("GET", "/runs/fixture/samples/..%2f..%2f..%2fsecret.txt"),
        ("GET", "/runs/fixture/samples/%2e%2e%5c%2e%2e%5csecret.txt"),
        ("GET", "/runs/..%2f/run.json"),
        ("GET", "//etc/passwd"),
        ("GET", "/etc/passwd"),
        ("GET", "/runs//etc/passwd"),
        ("GET", "/runs/fixture/samples/%00"),
        ("GET", "http://127.0.0.1/../secret.txt"),
        // Symlinks out of the runs directory, as a file, as a run, and inside a run.
        ("GET", "/runs/fixture/samples/leak.png"),
        ("GET", "/runs/escape/run.json"),
        ("GET", "/runs/fixture/embeddings/up"),
        ("GET", "/api/list/escape/samples"),
        // Files of a run the viewer does not read, and folders that are not routes.
        ("GET", "/runs/fixture/config.toml"),
        ("GET", "/runs/fixture/run.jsonl"),
        ("GET", "/api/list/fixture/.."),
        ("POST", "/api/runs"),
        ("PUT", "/runs/fixture/run.json"),
        ("DELETE", "/runs/fixture/run.json"),
        ("OPTIONS", "/"),
        ("GET", &long),
    ];
    for (method, target) in attempts {
        let reply = s.request(method, target);
        let shown = &target[..target.len().min(60)];
        assert!((400..500).contains(&reply.status), "{method} {shown} got {}", reply.status);
        let text = reply.text();
        assert!(!text.contains(SECRET) && !text.contains("root:"), "{method} {shown} leaked: {text}");
    }
    assert_eq!(s.request("POST", "/api/runs").header("allow"), Some("GET, HEAD"));
    assert_eq!(s.request("GET", &long).status, 414);
    // Still serving after all that.
    assert_eq!(s.request("GET", "/api/runs").status, 200);
}

/// tiny_http, the server before, could leave a new connection queued behind kept-alive
/// ones when several arrived at once; a browser's request on it waited for minutes (CI's
/// browser test hung on it). Batches of connections that all stay open, as a browser's do,
/// must each be answered, and each must answer again later.
#[test]
fn every_connection_is_answered_while_others_stay_open() {
    let tmp = temp_dir();
    fixture(tmp.path());
    let s = Served::start(&tmp.path().join("runs"), &tmp.path().join("dist"));
    let mut open = Vec::new();
    for round in 0..20 {
        let mut batch: Vec<_> = (0..6).map(|_| s.connect()).collect();
        for (i, stream) in batch.iter_mut().enumerate() {
            let reply = s.get_on(stream, "/api/runs");
            assert_eq!(reply.map(|r| r.status), Some(200), "connection {i} of round {round} was not answered");
        }
        open.extend(batch);
    }
    for (i, stream) in open.iter_mut().enumerate() {
        let reply = s.get_on(stream, "/runs/fixture/run.json");
        assert_eq!(reply.map(|r| r.text()), Some(r#"{"format_version": 1}"#.to_string()), "connection {i}");
    }
}

#[test]
fn start_up_errors_are_one_sentence() {
    let tmp = temp_dir();
    fixture(tmp.path());
    let runs = tmp.path().join("runs");
    let r = runs.to_str().unwrap();
    let dist = tmp.path().join("dist");
    let d = dist.to_str().unwrap();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serve", r, "--addr", &addr, "--dist", d], "already in use"),
        (vec!["serve", r, "--addr", "not-an-address", "--dist", d], "cannot listen on not-an-address"),
        (vec!["serve", r, "--addr", "127.0.0.1:0", "--dist", r], "web/build.sh"),
        (vec!["serve", "/nonexistent/runs", "--addr", "127.0.0.1:0", "--dist", d], "is not a runs directory"),
    ];
    for (args, needle) in cases {
        let line = pretext(&args).assert_one_line_error(&[needle]);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}
