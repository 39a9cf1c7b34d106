//! brinkd's log: written to stderr, with no terminal colour codes when stderr is a file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

#[test]
fn a_log_file_gets_no_colour_codes() {
    let dir = std::env::temp_dir().join(format!("brklog{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("brinkd.log");
    let mut brinkd = Command::new(env!("CARGO_BIN_EXE_brinkd"))
        .arg("--socket")
        .arg(dir.join("brink.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--idle-sleep"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("brinkd started")
    {
        assert!(Instant::now() < deadline, "brinkd did not log its start");
        assert!(brinkd.try_wait().unwrap().is_none(), "brinkd exited");
        sleep(Duration::from_millis(20));
    }
    let stopped = Command::new("kill")
        .arg(brinkd.id().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(brinkd.wait().unwrap().success());
    let text = std::fs::read(&log).unwrap();
    assert!(String::from_utf8_lossy(&text).contains("stopped"));
    assert!(!text.contains(&0x1b), "escape codes in the log file");
    std::fs::remove_dir_all(&dir).unwrap();
}
