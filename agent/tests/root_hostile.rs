//! Hostile traffic on a traced nginx (needs root and nginx): `bench/hostile.py` sends garbage,
//! malformed and huge heads, endless chunked bodies, bogus HTTP/2 frames and an HPACK bomb,
//! slowloris, thousands of distinct paths, deep pipelining and connections dropped with RST,
//! first without the agent and then with it. Its checks, asserted here: nginx's answers are
//! byte-identical both ways, the agent stays up without growing, what nginx answered normally
//! is counted exactly, what the agent cannot know is counted by reason, no event is lost.
//! `scripts/reliability.sh` runs the same generator at full scale with a release build.
mod common;

use std::process::Command;

use common::*;

#[test]
fn root_hostile_traffic_leaves_answers_identical_and_counts_exact() {
    require_root();
    let dir = std::env::temp_dir().join(format!("beyla-test-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report_path = dir.join("report.json");
    let out = Command::new(python3())
        .arg(repo().join("bench/hostile.py"))
        .args(["--agent", agent_bin().to_str().unwrap(), "--scale", "0.05", "--json"])
        .arg(&report_path)
        .output()
        .expect("running bench/hostile.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = match std::fs::read(&report_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("the report's JSON"),
        Err(e) => panic!("bench/hostile.py wrote no report ({e}); stderr:\n{stderr}"),
    };
    let checks = report["checks"].as_object().expect("checks");
    // The generator's checks, each of which can fail: at least these must have run.
    for wanted in [
        "answers identical: h2_bogus",
        "answers identical: paths",
        "agent alive",
        "paths: every 404 counted, exactly",
        "slowloris: every 200 counted, exactly",
        "chunked: every terminated POST counted, exactly",
        "deep pipeline: no more than sent, the loss counted",
        "no events lost",
    ] {
        assert!(checks.contains_key(wanted), "check {wanted:?} missing from the report: {report:#}");
    }
    let failed: Vec<_> = checks.iter().filter(|(_, v)| v.as_bool() != Some(true)).map(|(k, _)| k).collect();
    assert!(failed.is_empty(), "failed: {failed:?}\nreport: {report:#}\nstderr:\n{stderr}");
    assert!(out.status.success(), "bench/hostile.py exited with {}; stderr:\n{stderr}", out.status);
    let _ = std::fs::remove_dir_all(&dir);
}
