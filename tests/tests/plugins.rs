//! `pretext plugins [--json]`: the eight built-in tasks are discovered beside the binary and
//! listed with name, version, ABI version, path and status, as a table and as JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pretext_core::task::abi::ABI_VERSION;
use pretext_tests::{faulty_plugin, pretext, target_dir};

const TASKS: [&str; 8] = ["simclr", "jigsaw", "rotation", "byol", "dino", "barlow", "vicreg", "mae"];

#[test]
fn json_lists_the_eight_tasks_with_version_abi_path_and_status() {
    let out = pretext(&["plugins", "--json"]);
    out.assert_success();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("stdout is a JSON array");
    for task in TASKS {
        let row =
            rows.iter().find(|r| r["name"] == task).unwrap_or_else(|| panic!("{task} is not listed: {}", out.stdout));
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(row["abi_version"], ABI_VERSION);
        let path = std::path::PathBuf::from(row["path"].as_str().unwrap());
        assert_eq!(path, target_dir().join(format!("libpretext_{task}.so")));
        assert!(path.is_file());
        assert!(row["default_config"].is_object(), "{row}");
    }
    // Only libraries named `libpretext_*` are discovered: the fixture plugin sits in the
    // same folder but is not listed.
    assert!(faulty_plugin().is_file());
    assert!(rows.iter().all(|r| r["name"] != "faulty"), "{}", out.stdout);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{}", out.stdout);
}

#[test]
fn table_shows_the_same_rows_as_json() {
    let json = pretext(&["plugins", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    let table = pretext(&["plugins"]);
    table.assert_success();
    let lines: Vec<&str> = table.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "VERSION", "ABI", "CUDA", "STATUS", "PATH"]);
    assert_eq!(lines.len(), rows.len() + 1, "one line per plugin:\n{}", table.stdout);
    for row in &rows {
        let expected = [
            row["name"].as_str().unwrap().to_string(),
            row["version"].as_str().unwrap().to_string(),
            row["abi_version"].to_string(),
            if row["cuda"] == true { "yes" } else { "no" }.to_string(),
            row["status"].as_str().unwrap().to_string(),
            row["path"].as_str().unwrap().to_string(),
        ];
        assert!(
            lines[1..].iter().any(|l| l.split_whitespace().collect::<Vec<_>>() == expected),
            "no table line {expected:?} in:\n{}",
            table.stdout
        );
    }
    for task in TASKS {
        assert!(rows.iter().any(|r| r["name"] == task));
    }
}
