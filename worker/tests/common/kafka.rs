//! A real Kafka broker for the worker's integration tests: single-node KRaft on loopback,
//! started by `scripts/kafka/kafka.sh` (set `WEIR_KAFKA_HOME` to reuse fetched jars).

use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

/// A broker started by kafka.sh in a temporary directory; stopped on drop.
pub struct Kafka {
    script: PathBuf,
    dir: PathBuf,
    pub bootstrap: String,
    _tempdir: tempfile::TempDir,
}

impl Kafka {
    /// Starts a broker (fetching its jars on first use).
    pub fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka/kafka.sh");
        let tempdir = tempfile::Builder::new()
            .prefix("weir-kafka-worker-test-")
            .tempdir()
            .unwrap();
        let dir = tempdir.path().join("broker");
        let output = Process::new("bash")
            .arg(&script)
            .arg("start")
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kafka.sh start failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bootstrap = stdout
            .lines()
            .find_map(|l| l.strip_prefix("bootstrap="))
            .unwrap()
            .trim()
            .to_string();
        Kafka {
            script,
            dir,
            bootstrap,
            _tempdir: tempdir,
        }
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = Process::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }
}
